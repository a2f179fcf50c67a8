"""Checkers for the exercises in the notebooks, one module per chapter.

Each ``check_*`` function calls the learner's function on small inputs, compares with
nlbook's reference, and raises ``AssertionError`` with a message that says what is wrong
(shape, sign, a missing term...). On success it prints a short confirmation and returns True.
Use them as ``from nlbook.exercises import associative_memory as ex; ex.check_delta_step(fn)``.
"""

"""Tasks and data for chapter 7 ("what HOPE's memories buy"): one concept per module.

- :mod:`nlbook.tasks.formal_languages`  the paper's Table 5 languages (after Irie et al. 2023)
  as accept/reject at an end token, with length bins and a train/evaluate harness
- :mod:`nlbook.tasks.recall`            facts planted in Shakespeare and recalled across a gap;
  MQAR-style multi-key recall; training text where in-context recall is learnable
- :mod:`nlbook.tasks.continual`         corpus A (Tiny Shakespeare) → B (Python source) → A

Every generator is deterministic under an explicit seed or generator and validates its
arguments (ValueError naming the argument, what was given and what was expected).
"""

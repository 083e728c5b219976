"""The probes: the multi-label linear probe (:mod:`.linear`, scored by
:mod:`.average_precision`), the 1D probe (:mod:`.one_d`), and their group-aware row sets
and inputs (:mod:`.run`)."""

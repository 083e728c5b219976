"""What an evaluation writes and prints: eval.md (:mod:`.markdown`), the PNG plots
(:mod:`.plots`), the eval directory (:mod:`.write`) and ``sparc compare`` (:mod:`.compare`)."""

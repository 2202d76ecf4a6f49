"""AAV2 inverted terminal repeats as they sit in an AAV vector plasmid, for the tests of the
synthesis checks and of GenBank round trips with ITR flanks.

Each is 141 nt: the 130-nt ITR with 11 nt of plasmid sequence on its outer side. Checked by
string match on 2026-11-27 against the ``SEQ_AAV2`` table of PacBio's public AAV long-read
QC code (``get_flipflop_config.py``). The 5' ITR's 130 nt end its ``left_flop``, and the 3'
ITR's begin its ``right_flop``. The 11 outer nt (``CCTGCAGGCAG``, ``CTGCCTGCAGG``) come from
the review that found the defect; they were not checked against any plasmid record. The two
ITRs share the 28-nt direct stretch ``CTGCGCGCTCGCTCGCTCACTGAGGCCG``: every ITR pair holds
a 20-nt repeat.
"""

ITR5 = (
    "CCTGCAGGCAGCTGCGCGCTCGCTCGCTCACTGAGGCCGCCCGGGCAAAGCCCGGGCGTCGGGCGACCTTTGGTCGCCCGGCCTCAG"
    "TGAGCGAGCGAGCGCGCAGAGAGGGAGTGGCCAACTCCATCACTAGGGGTTCCT"
)
ITR3 = (
    "AGGAACCCCTAGTGATGGAGTTGGCCACTCCCTCTCTGCGCGCTCGCTCGCTCACTGAGGCCGGGCGACCAAAGGTCGCCCGACGC"
    "CCGGGCTTTGCCCGGGCGGCCTCAGTGAGCGAGCGAGCGCGCAGCTGCCTGCAGG"
)

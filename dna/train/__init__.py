"""Block-wise training of student supernets (DNA: Eq. 6)."""

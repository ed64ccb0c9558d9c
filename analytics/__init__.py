"""Detection maths for Safe-Home Guardian.

Pure functions and small state objects over numpy arrays: no I/O, no clock reads
(every function takes the time it needs as an argument), numpy and stdlib only.
"""

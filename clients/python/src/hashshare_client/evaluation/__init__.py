"""``hashshare eval``: how well matching survives re-upload tricks.

Applies each transform family to real images and real Vietnamese texts,
then measures recall per transform and false matches between distinct
originals, both from the signals' own distances (to choose thresholds) and
end to end through a running server at its shipped thresholds.
"""

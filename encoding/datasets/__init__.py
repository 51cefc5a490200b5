"""Loaders of real data into the data model: BIDS (ds003720, studyforrest) and plain tables."""

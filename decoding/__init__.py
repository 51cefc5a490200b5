"""brain2music decoding: from responses back to the encoding feature spaces (identification, retrieval).

Decoding reuses the encoding package's data model, feature spaces and design matrices; its own
estimators arrive with the decoding issue.
"""

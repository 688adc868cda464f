"""Getting Korean legal texts in: the law.go.kr DRF API (``lawgo``) and the legalize-kr git mirrors (``mirror``).

Both produce the record types of :mod:`lexdpr_pipeline.sources.records`.
"""

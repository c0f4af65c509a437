"""Diversity measures: lexical (`lexical`) and semantic (`semantic`)."""

"""People-level features: segments, search, forget, CRM signals."""

"""
streamd's tests.

Hypothesis runs without its timing checks: on a busy two-core CI machine
(or beside the integration tests' daemons) generating one input can take
seconds, which says nothing about streamd.
"""

from hypothesis import HealthCheck, settings

settings.register_profile("streamd", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("streamd")

"""
The test suite: unit tests here, process and socket tests in
C{tests.integration}.

Hypothesis runs without its timing checks: on a busy two-core CI machine
(or beside the integration tests' daemons) generating one input can take
seconds, which says nothing about streamd.  C{HYPOTHESIS_PROFILE=quick}
(what C{make test-unit} sets) runs each property test on a fifth of its
examples, for a quick loop while editing; C{make test} and CI run them all.
"""

import os

from hypothesis import HealthCheck, settings

settings.register_profile("streamd", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("quick", parent=settings.get_profile("streamd"), max_examples=settings().max_examples // 5)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "streamd"))

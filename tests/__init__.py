"""
The test suite: unit tests here, process and socket tests in
C{tests.integration}.

C{HYPOTHESIS_PROFILE=quick} (what C{make test-unit} sets) runs each property
test on a fifth of its examples, for a quick loop while editing; C{make
test} and CI run them all.
"""

import os

if os.environ.get("HYPOTHESIS_PROFILE"):
    from hypothesis import settings

    settings.register_profile("quick", max_examples=settings().max_examples // 5)
    settings.load_profile(os.environ["HYPOTHESIS_PROFILE"])

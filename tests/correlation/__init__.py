import pytest

pytest.register_assert_rewrite("tests.correlation.engine_adapter")

"""tasks.build_runtime: runtime settings come in as keywords."""
import types

import pytest

from patcher_jax import tasks


def test_build_runtime_refuses_a_setting_its_class_lacks():
  bench = types.SimpleNamespace(train=[None] * 4)
  # FEVER's runtime has no subject negatives: refused before any model work
  with pytest.raises(ValueError, match="no setting learned_negatives"):
    tasks.build_runtime("fever", bench, None, seed=0, train_sub_size=2,
                        learned_negatives=True)

"""patcher_jax: Transformer-Patcher (Huang et al., ICLR 2023) in JAX/Flax.

Sequential model editing: every mistake of a frozen transformer is fixed by a
few neurons added to its last FFN layer, trained on cached queries.
"""
from patcher_jax import configs
from patcher_jax.api import Editor
from patcher_jax.configs import fast_config, parity_config
from patcher_jax.editor import (EditConfig, EditState, EditStats, EditTask,
                                edit, init_state, loss_parts, make_edit_task,
                                make_optimizer, patch_step)
from patcher_jax.memory import Memory, init_memory
from patcher_jax.patch import (Neurons, PatchBank, add_neurons, bank_output,
                               drop_edit, ensure_capacity, init_bank,
                               init_neurons)
from patcher_jax.tail import Tail, tail_logits

__version__ = "0.1.0"

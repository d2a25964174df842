"""patcher_jax: Transformer-Patcher (Huang et al., ICLR 2023) in JAX/Flax.

Sequential model editing: every mistake of a frozen transformer is fixed by a
few neurons added to its last FFN layer, trained on cached queries.

Public API:
  Editor                      requests in, patched model out (api.py)
  configs.get(task, mode)     a task's EditConfig; configs.stream_settings
  EditConfig (= fast mode), fast_config, parity_config
  make_edit_task, edit        one whole edit (one compiled loop)
  initial_neurons, init_state, patch_step, loss_parts, make_optimizer
                              drive the optimiser yourself, a step at a time
  init_bank, add_neurons, drop_edit, compact, ensure_capacity, bank_output,
  live_neurons, init_neurons, Neurons, PatchBank        the patch bank
  init_memory, append_memory, Memory                    the memory set
  Tail, tail_logits           the frozen top of the model (adapters build it)
"""
from patcher_jax import configs
from patcher_jax.api import Editor
from patcher_jax.configs import fast_config, parity_config
from patcher_jax.editor import (EditConfig, EditState, EditStats, EditTask,
                                edit, init_state, initial_neurons, loss_parts,
                                make_edit_task, make_optimizer, patch_step)
from patcher_jax.memory import Memory, init_memory
from patcher_jax.memory import append as append_memory
from patcher_jax.patch import (Neurons, PatchBank, add_neurons, bank_output,
                               compact, drop_edit, ensure_capacity, init_bank,
                               init_neurons, live_neurons)
from patcher_jax.tail import Tail, tail_logits

__version__ = "0.1.0"

"""patch_step and edit: jit/vmap equal the plain call; an edit fixes its
mistake on tiny models in both modes; the plateau rule; neuron selection."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import patcher_jax as pj
from patcher_jax import editor
from patcher_jax.adapters import bart, bert


def _bert_setup(t):
  logits, q = bert.forward(t.model, t.params, t.input_ids, t.attention_mask)
  tail = bert.make_tail(t.config, t.params)
  labels = (logits[:, 0] <= 0).astype(jnp.int32)     # every example wrong
  targets, mask = bert.targets(labels)
  memory = pj.init_memory(q[1:], 32)
  return tail, q, targets, mask, memory, labels


def _bert_task(tail, bank, q, targets, mask, i=0):
  return pj.make_edit_task(tail, bank, q[i:i + 1], targets[i], mask[i],
                           max_neurons=1)


def test_patch_step_jit_and_vmap_equal_plain_call(tiny_bert):
  tail, q, targets, mask, memory, _ = _bert_setup(tiny_bert)
  bank = pj.init_bank(8, 32)
  config = pj.fast_config()
  tasks = [_bert_task(tail, bank, q, targets, mask, i) for i in range(3)]
  states = [pj.init_state(editor.initial_neurons(tail, t, jax.random.PRNGKey(i),
                                                 config),
                          jax.random.PRNGKey(10 + i), config)
            for i, t in enumerate(tasks)]
  plain = [pj.patch_step(s, tail, t, memory, config)
           for s, t in zip(states, tasks)]
  step = jax.jit(pj.patch_step, static_argnames="config")
  jitted = [step(s, tail, t, memory, config=config)
            for s, t in zip(states, tasks)]
  chex.assert_trees_all_close(jitted, plain, atol=1e-5, rtol=1e-5)

  stack = lambda xs: jax.tree.map(lambda *a: jnp.stack(a), *xs)
  vstep = jax.jit(jax.vmap(pj.patch_step, in_axes=(0, None, 0, None, None)),
                  static_argnums=4)
  vm = vstep(stack(states), tail, stack(tasks), memory, config)
  chex.assert_trees_all_close(vm, stack(plain), atol=1e-5, rtol=1e-5)
  new_state, parts = plain[0]
  chex.assert_trees_all_equal_shapes(new_state, states[0])
  chex.assert_shape(parts.wrong, (config.copies, 1))
  assert int(new_state.step) == 1


def test_patch_step_with_donated_state(tiny_bert):
  tail, q, targets, mask, memory, _ = _bert_setup(tiny_bert)
  task = _bert_task(tail, pj.init_bank(8, 32), q, targets, mask)
  config = pj.fast_config()
  state = pj.init_state(editor.initial_neurons(tail, task, jax.random.PRNGKey(0),
                                               config),
                        jax.random.PRNGKey(1), config)
  # copy: the plain result shares unchanged leaves (lr) with `state`
  want = jax.tree.map(jnp.copy, pj.patch_step(state, tail, task, memory,
                                              config))
  step = jax.jit(pj.patch_step, static_argnames="config", donate_argnums=0)
  got = step(state, tail, task, memory, config=config)
  chex.assert_trees_all_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("mode", ["fast", "parity"])
def test_edit_fixes_bert_mistake(tiny_bert, mode):
  t = tiny_bert
  tail, q, targets, mask, memory, labels = _bert_setup(t)
  config = (pj.fast_config() if mode == "fast" else pj.parity_config())
  bank = pj.init_bank(8, 32)
  noisy = None
  if config.noise:
    noisy = bert.noisy_queries(t.model, t.params, t.input_ids[:1],
                               t.attention_mask[:1], jax.random.PRNGKey(3), 16)
  task = pj.make_edit_task(tail, bank, q[:1], targets[0], mask[0],
                           noisy_queries=noisy, max_neurons=1)
  run = jax.jit(pj.edit, static_argnames="config")
  new_bank, stats = run(tail, bank, task, memory, memory,
                        jax.random.PRNGKey(0), 0, config=config)
  assert bool(stats.success), stats
  assert int(new_bank.size) == 1 and int(stats.num_neurons) == 1
  logits, _ = bert.forward(t.model, t.params, t.input_ids, t.attention_mask,
                           bank=new_bank)
  assert int(logits[0, 0] > 0) == int(labels[0])
  if mode == "parity":
    # the reference's rule: checks at steps 124, 149, ...; >= 2 successes.
    assert int(stats.steps) >= 150 and (int(stats.steps) % 25 == 0)


@pytest.mark.parametrize("mode", ["fast", "parity"])
def test_edit_fixes_bart_mistake(tiny_bart, mode):
  t = tiny_bart
  logits, q = bart.forward(t.model, t.params, *t.batch())
  tail = bart.make_tail(t.config, t.params)
  memory = pj.init_memory(q[1:].reshape(-1, 32), 64)
  config = (pj.fast_config(mem_weight=10.0) if mode == "fast"
            else pj.parity_config(mem_weight=10.0))
  bank = pj.init_bank(8, 32)
  noisy = None
  if config.noise:
    ids, am, dec, dm = (a[:1] for a in t.batch())
    noisy = bart.noisy_queries(t.model, t.params, ids, am, dec, dm,
                               jax.random.PRNGKey(3), 16)
  tmask = jnp.ones(5, bool)
  task = pj.make_edit_task(tail, bank, q[0], t.labels[0], tmask,
                           noisy_queries=noisy, max_neurons=5)
  n_wrong = int(jnp.sum(jnp.argmax(logits[0], -1) != t.labels[0]))
  assert int(task.neuron_mask.sum()) == min(n_wrong, 5) > 0
  run = jax.jit(pj.edit, static_argnames="config")
  new_bank, stats = run(tail, bank, task, memory, memory,
                        jax.random.PRNGKey(0), 0, config=config)
  assert bool(stats.success), stats
  got, _ = bart.forward(t.model, t.params, *t.batch(), bank=new_bank)
  np.testing.assert_array_equal(np.asarray(jnp.argmax(got[0], -1)),
                                np.asarray(t.labels[0]))


def test_edit_does_not_recompile_as_bank_grows(tiny_bert):
  tail, q, targets, mask, memory, _ = _bert_setup(tiny_bert)
  traces = []

  def counted(*args, config):
    traces.append(1)
    return pj.edit(*args, config=config)

  run = jax.jit(counted, static_argnames="config")
  config = pj.fast_config(max_steps=50)
  bank = pj.init_bank(8, 32)
  for i in range(4):
    task = _bert_task(tail, bank, q, targets, mask, i)
    bank, _ = run(tail, bank, task, memory, memory, jax.random.PRNGKey(i), i,
                  config=config)
  assert len(traces) == 1


def test_failed_edit_is_discarded_unless_kept(tiny_bert):
  tail, q, targets, mask, memory, _ = _bert_setup(tiny_bert)
  bank = pj.init_bank(8, 32)
  task = _bert_task(tail, bank, q, targets, mask)
  for keep in (False, True):
    config = pj.fast_config(max_steps=1, keep_failed=keep)
    new_bank, stats = pj.edit(tail, bank, task, memory, memory,
                              jax.random.PRNGKey(0), 0, config=config)
    assert not bool(stats.success)
    assert int(new_bank.size) == int(keep)


def test_neuron_positions_are_first_wrong_positions(tiny_bart):
  t = tiny_bart
  logits, q = bart.forward(t.model, t.params, *t.batch())
  tail = bart.make_tail(t.config, t.params)
  pred = jnp.argmax(logits[1], -1)
  # make exactly positions 1 and 3 wrong
  targets = pred.at[1].set((pred[1] + 1) % 120).at[3].set((pred[3] + 1) % 120)
  task = pj.make_edit_task(tail, pj.init_bank(4, 32), q[1], targets,
                           jnp.ones(5, bool), max_neurons=5)
  assert task.neuron_mask.tolist() == [True, True, False, False, False]
  assert task.neuron_pos[:2].tolist() == [1, 3]
  none = pj.make_edit_task(tail, pj.init_bank(4, 32), q[1], pred,
                           jnp.ones(5, bool), max_neurons=5)
  assert not bool(none.neuron_mask.any())


def _position_leads(t):
  """Tiny BART row 1: predictions [5], each position's lead of its top
  logit over the runner-up, the decoder queries and the tail."""
  logits, q = bart.forward(t.model, t.params, *t.batch())
  top2 = jax.lax.top_k(logits[1], 2)[0]
  return (jnp.argmax(logits[1], -1), np.asarray(top2[:, 0] - top2[:, 1]),
          q[1], bart.make_tail(t.config, t.params))


@pytest.mark.parametrize("margin,max_neurons,wrong,expect", [
    ("none", 5, True, "wrong"),          # margin 0: the reference's rule
    ("one", 5, True, "wrong+least"),     # + the barely right position
    ("all", 5, True, "wrong+rest"),      # every position, wrong ones first
    ("all", 2, True, "wrong+first"),     # capped: wrong, then in order
    ("all", 5, False, "nothing"),        # nothing wrong: not an edit
    ("all", 5, True, "masked"),          # masked positions: never a neuron
    ("negative", 5, True, "wrong"),      # a margin below 0: as margin 0
])
def test_neuron_margin_adds_barely_right_positions(tiny_bart, margin,
                                                   max_neurons, wrong,
                                                   expect):
  pred, lead, q, tail = _position_leads(tiny_bart)
  targets = pred.at[3].set((pred[3] + 1) % 120) if wrong else pred
  right = [p for p in range(5) if p != 3]
  by_lead = sorted(right, key=lambda p: lead[p])
  value = {"none": 0.0, "all": float(lead.max()) + 1.0, "negative": -50.0,
           # between the smallest and the next lead of the right positions
           "one": float(lead[by_lead[0]] + lead[by_lead[1]]) / 2}[margin]
  mask = jnp.ones(5, bool)
  if expect == "masked":    # the last position and a right one out
    mask = mask.at[4].set(False).at[right[0]].set(False)
  task = pj.make_edit_task(tail, pj.init_bank(4, 32), q, targets, mask,
                           max_neurons=max_neurons, neuron_margin=value)
  want = {"wrong": [3], "wrong+least": [3, by_lead[0]],
          "wrong+rest": [3] + right, "wrong+first": [3, right[0]],
          "nothing": [], "masked": [3] + [p for p in right[1:] if p != 4]
          }[expect]
  used = int(task.neuron_mask.sum())
  assert task.neuron_mask.tolist()[:used] == [True] * used
  assert task.neuron_pos[:used].tolist() == want


def test_plateau_rule_matches_torch_semantics():
  config = pj.EditConfig()
  p = editor._Plateau(jnp.asarray(jnp.inf), jnp.asarray(0))
  lr = jnp.asarray(0.01)
  lrs = []
  for metric in [1.0, 0.99, 0.98, 0.5, 0.49, 0.48]:
    p, lr = editor._plateau_update(p, lr, jnp.asarray(metric), config)
    lrs.append(float(lr))
  # 0.99 and 0.98 are not 5% better than 1.0: the second bad check halves lr
  np.testing.assert_allclose(lrs, [0.01, 0.01, 0.005, 0.005, 0.005, 0.0025])


def _bart_edit_inputs(t):
  """Decoder queries of the tiny BART batch, its tail, and a memory of every
  row but the first (the one edited)."""
  _, q = bart.forward(t.model, t.params, *t.batch())
  tail = bart.make_tail(t.config, t.params)
  return q, tail, pj.init_memory(q[1:].reshape(-1, 32), 64)


def test_full_model_path_gives_the_same_patch(tiny_bart):
  """Cached tail and whole-model path: same steps, same neurons (fast mode)."""
  t = tiny_bart
  q, tail, memory = _bart_edit_inputs(t)
  config = pj.fast_config(mem_weight=10.0)
  bank = pj.init_bank(8, 32)
  task = pj.make_edit_task(tail, bank, q[0], t.labels[0], jnp.ones(5, bool),
                           max_neurons=5)
  full = bart.full_model(t.model, t.params, bank, *(a[:1] for a in t.batch()))
  run = jax.jit(pj.edit, static_argnames="config")
  cached_bank, cached = run(tail, bank, task, memory, memory,
                            jax.random.PRNGKey(0), 0, config=config)
  full_bank, full_stats = run(tail, bank, task, memory, memory,
                              jax.random.PRNGKey(0), 0, config=config,
                              full=full)
  assert bool(cached.success) and bool(full_stats.success)
  assert int(cached.steps) == int(full_stats.steps)
  chex.assert_trees_all_close(cached_bank, full_bank, atol=2e-3, rtol=1e-3)


def test_steps_rule_replays_a_stopped_edit(tiny_bert):
  """stop_rule="steps" with a traced num_steps runs exactly that many steps:
  replaying the margins rule's step count gives its patch (one compile)."""
  tail, q, targets, mask, memory, _ = _bert_setup(tiny_bert)
  bank = pj.init_bank(8, 32)
  task = _bert_task(tail, bank, q, targets, mask)
  traces = []

  def counted(*args, config, num_steps=None):
    traces.append(config)
    return pj.edit(*args, config=config, num_steps=num_steps)

  run = jax.jit(counted, static_argnames="config")
  config = pj.fast_config()
  want_bank, want = run(tail, bank, task, memory, memory,
                        jax.random.PRNGKey(0), 0, config=config)
  steps = int(want.steps)
  forced = config._replace(stop_rule="steps", check_every=10**9)
  for n in (steps, steps + 3):
    got_bank, got = run(tail, bank, task, memory, memory,
                        jax.random.PRNGKey(0), 0, config=forced,
                        num_steps=n)
    assert int(got.steps) == n
  got_bank, got = run(tail, bank, task, memory, memory, jax.random.PRNGKey(0),
                      0, config=forced, num_steps=steps)
  chex.assert_trees_all_close(got_bank, want_bank, atol=1e-6)
  assert len(traces) == 2          # one per config, not per num_steps


def test_cropped_and_padded_tasks_give_the_same_edit(tiny_bart):
  """A seq2seq task cropped to its target positions, or padded with masked
  ones (to stack with wider tasks), trains the same neurons."""
  t = tiny_bart
  q, tail, memory = _bart_edit_inputs(t)
  config = pj.fast_config(mem_weight=10.0)
  bank = pj.init_bank(8, 32)
  tmask = jnp.array([True, True, True, False, False])
  full = pj.make_edit_task(tail, bank, q[0], t.labels[0], tmask,
                           max_neurons=5)
  width = editor.task_width(3, 5, floor=1)
  assert width == 4
  cropped = pj.make_edit_task(tail, bank, q[0][:width], t.labels[0][:width],
                              tmask[:width], max_neurons=5)
  padded = editor.pad_positions(cropped, 8)
  chex.assert_shape(padded.queries, (8, 32))
  # one slot per position is enough; stacking pads the slots back
  slim = pj.make_edit_task(tail, bank, q[0][:width], t.labels[0][:width],
                           tmask[:width], max_neurons=width)
  slim_padded = editor.pad_positions(slim, 8, num_neurons=7)
  chex.assert_shape([slim_padded.neuron_pos, slim_padded.neuron_mask], (7,))
  assert not bool(slim_padded.neuron_mask[4:].any())
  # slots cut to the neurons in use (a power of two), or no task at all
  fitted = editor.fit_slots(full)
  used = int(full.neuron_mask.sum())
  assert fitted.neuron_mask.shape[0] == 1 << (used - 1).bit_length() < 5
  assert bool(fitted.neuron_mask[:used].all())
  assert editor.fit_slots(full._replace(
      neuron_mask=jnp.zeros_like(full.neuron_mask))) is None
  tasks = (full, cropped, padded, slim, slim_padded, fitted)
  results = [pj.edit(tail, bank, task, memory, memory, jax.random.PRNGKey(0),
                     0, config=config) for task in tasks]
  assert bool(results[0][1].success)
  for got in results[1:]:
    assert int(got[1].steps) == int(results[0][1].steps)
    chex.assert_trees_all_close(got[0], results[0][0], atol=1e-5, rtol=1e-5)


def test_an_unreachable_edit_margin_stops_after_the_patience(tiny_bart):
  t = tiny_bart
  q, tail, memory = _bart_edit_inputs(t)
  bank = pj.init_bank(8, 32)
  task = pj.make_edit_task(tail, bank, q[0], t.labels[0],
                           jnp.array([True, True, True, False, False]),
                           max_neurons=5)
  run = lambda **kw: pj.edit(tail, bank, task, memory, memory,
                             jax.random.PRNGKey(0), 0,
                             config=pj.fast_config(mem_weight=10.0, **kw))[1]
  plain = run()
  capped = run(edit_margin=1e6, margin_patience=5)
  assert bool(plain.success) and bool(capped.success)
  assert int(plain.steps) <= int(capped.steps) <= int(plain.steps) + 6
  assert not bool(capped.margins_ok)


def test_pool_alpha_trains_the_neuron_to_fire_on_the_pool(tiny_bart):
  # The pool (here: inputs with hidden words) joins the activation and memory
  # losses: the trained neuron fires more on it than without, and with
  # pool_stop the stop rule holds the pool to the memory margins too.
  t = tiny_bart
  _, q = bart.forward(t.model, t.params, *t.batch())
  tail = bart.make_tail(t.config, t.params)
  memory = pj.init_memory(q[1:].reshape(-1, 32), 64)
  ids, am, dec, dm = (a[:1] for a in t.batch())
  pool = bart.augmented_queries(t.model, t.params, ids, am, dec, dm,
                                jax.random.PRNGKey(3), 8, word_drop=0.5)
  chex.assert_shape(pool, (8,) + q.shape[1:])
  assert not np.allclose(pool, q[:1])
  bank = pj.init_bank(8, 32)
  task = pj.make_edit_task(tail, bank, q[0], t.labels[0], jnp.ones(5, bool),
                           noisy_queries=pool, max_neurons=5)
  run = jax.jit(pj.edit, static_argnames="config")

  def pool_alpha(config):
    new_bank, stats = run(tail, bank, task, memory, memory,
                          jax.random.PRNGKey(0), 0, config=config)
    assert bool(stats.success), stats
    n = int(new_bank.size)
    pos = task.neuron_pos[:n]
    a = jnp.einsum("snd,nd->sn", pool[:, pos], new_bank.keys[:n])
    return float(jnp.min(a + new_bank.biases[:n])), stats

  base = pj.fast_config(mem_weight=10.0, max_steps=300)
  plain, _ = pool_alpha(base)
  pooled, _ = pool_alpha(base._replace(pool_alpha=True))
  held, stats = pool_alpha(base._replace(pool_alpha=True, pool_stop=True))
  assert pooled > plain
  if bool(stats.margins_ok):
    assert held > float(stats.max_memory_h) + base.gamma


@pytest.mark.parametrize("case", ["spread", "empty", "inseparable"])
def test_margin_keys_place_the_memory_margins(case):
  """key_init "margins": before any step the memory's largest pre-activation
  is beta - slack and the edit's beta + gamma + slack; with an empty memory,
  or a memory row as far along the query as the edit, the keys stay."""
  from patcher_jax import memory as memory_lib  # pylint: disable=g-import-not-at-top
  from patcher_jax import patch as patch_lib  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  q = jnp.asarray(rng.normal(size=(2, 16)), jnp.float32)
  rows = rng.normal(size=(40, 16)) * 0.5
  if case == "inseparable":
    rows[7] = 1.2 * np.asarray(q[1])
  mem = memory_lib.init_memory(jnp.asarray(rows[:0 if case == "empty"
                                                 else 40], jnp.float32), 64)
  cfg = pj.fast_config(key_init="margins")
  fresh = patch_lib.init_neurons(q, jax.random.PRNGKey(0),
                                 value_init="zero")
  placed = editor.margin_keys(fresh, mem, cfg)
  edit_pre = jnp.sum(q * placed.keys, -1) + placed.biases
  mem_pre = jnp.asarray(rows, jnp.float32) @ placed.keys.T + placed.biases
  if case == "spread":
    np.testing.assert_allclose(edit_pre, cfg.beta + cfg.gamma
                               + cfg.init_slack, rtol=1e-5)
    np.testing.assert_allclose(mem_pre.max(0), cfg.beta - cfg.init_slack,
                               rtol=1e-5)
  elif case == "empty":
    chex.assert_trees_all_close(placed, fresh)
  else:   # neuron 0 is placed, neuron 1 cannot be
    np.testing.assert_allclose(mem_pre[:, 0].max(), cfg.beta
                               - cfg.init_slack, rtol=1e-5)
    chex.assert_trees_all_close(placed.keys[1], fresh.keys[1])
    assert float(placed.biases[1]) == 0.0


def test_fitted_values_make_the_fix_hold_by_the_margin(tiny_bart):
  """value_fit: the initial values are scaled by the smallest grid point at
  which the fix holds by edit_margin (else the one of lowest edit loss); an
  edit whose margins all hold then stops before its first step."""
  t = tiny_bart
  q, tail, memory = _bart_edit_inputs(t)
  bank = pj.init_bank(8, 32)
  logits, _ = bart.forward(t.model, t.params, *t.batch())
  right = jnp.argmax(logits[0], -1)       # targets the model already gets
  rng = jax.random.PRNGKey(0)
  reached = []
  for targets, margin in ((t.labels[0], 0.0), (t.labels[0], 50.0),
                          (right, 0.0)):
    task = pj.make_edit_task(tail, bank, q[0], targets,
                             jnp.array([True, True, True, False, False]),
                             max_neurons=5)
    config = pj.fast_config(mem_weight=10.0, edit_margin=margin,
                            key_init="margins")
    plain = editor.initial_neurons(tail, task, rng, config, memory)
    fitted = editor.initial_neurons(tail, task, rng,
                                    config._replace(value_fit=True), memory)
    ratio = np.asarray(fitted.values / plain.values)
    scale = float(ratio.reshape(-1)[0])
    np.testing.assert_allclose(ratio, scale, rtol=1e-5)
    grid = np.sqrt(2.0) ** np.arange(12)
    parts = [editor.loss_parts(plain._replace(values=plain.values * g), tail,
                               task, memory, rng, config, train=False)
             for g in grid]
    holds = np.array([not bool(jnp.any(p.unsure)) for p in parts])
    reached.append(bool(holds.any()))
    want = (grid[np.argmax(holds)] if holds.any()
            else grid[np.argmin([float(p.edit) for p in parts])])
    np.testing.assert_allclose(scale, want, rtol=1e-5)
    _, stats = pj.edit(tail, bank, task, memory, memory, rng, 0,
                       config._replace(value_fit=True))
    pick = parts[int(np.argmin(np.abs(grid - scale)))]
    if bool(editor._margins_ok(pick, config)) and bool(  # pylint: disable=protected-access
        editor._success(pick)):  # pylint: disable=protected-access
      assert int(stats.steps) == 0
  assert not reached[1] and reached[2]    # both branches of the rule ran


def test_task_negatives_are_held_below_their_bound(tiny_bart):
  # An edit's own negatives (EditTask.negatives): queries near the edit's
  # own, on which the new neuron fires without them; with them it is held
  # below negative_beta (the margins rule waits for it), masked rows
  # count for nothing, and the edit still holds.
  t = tiny_bart
  _, q = bart.forward(t.model, t.params, *t.batch())
  tail = bart.make_tail(t.config, t.params)
  memory = pj.init_memory(q[2:].reshape(-1, 32), 64)
  bank = pj.init_bank(8, 32)
  task = pj.make_edit_task(tail, bank, q[0], t.labels[0], jnp.ones(5, bool),
                           max_neurons=5)
  near = q[0] + 0.3 * (q[1] - q[0])          # [5, 32]: between two inputs
  run = jax.jit(pj.edit, static_argnames="config")
  config = pj.fast_config(mem_weight=10.0, max_steps=400, negative_beta=-1.0)

  def top_on_near(task):
    new_bank, stats = run(tail, bank, task, memory, memory,
                          jax.random.PRNGKey(0), 0, config=config)
    assert bool(stats.success), stats
    n = int(new_bank.size)
    h = near @ new_bank.keys[:n].T + new_bank.biases[:n]
    return float(jnp.max(h)), stats

  mask = jnp.ones(5, bool)
  free, _ = top_on_near(task._replace(negatives=near,
                                      negatives_mask=~mask))
  held, stats = top_on_near(task._replace(negatives=near,
                                          negatives_mask=mask))
  assert free > config.negative_beta         # the test bites
  assert held < free
  if bool(stats.margins_ok):
    assert held < config.negative_beta

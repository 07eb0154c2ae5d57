"""Mutation testing of supcon's core with mutmut 3, one module at a time against its fast tests.

Not part of the default test run (it takes minutes to hours on a busy CPU). Usage::

    pip install -e '.[mutation]'
    nice -n 19 python benchmarks/mutation.py                     # every module below
    nice -n 19 python benchmarks/mutation.py losses/tiled.py     # one module (or several)
    nice -n 19 python benchmarks/mutation.py --recheck           # survivors, fresh processes
    python benchmarks/mutation.py --report                       # tables from earlier runs
    python benchmarks/mutation.py --survivors losses/tiled.py    # survivors with their diffs

For each module it builds a scratch project under ``.mutation/<module>/`` (git-ignored): a copy
of ``supcon/`` and ``tests/`` plus a ``pyproject.toml`` whose ``[tool.mutmut]`` section mutates
only that module and selects only its test files, then runs ``mutmut run`` there with one
worker and one thread. mutmut maps each mutated function to the tests that execute it and runs
only those per mutant. Results stay in the scratch copy, so a rerun resumes where it stopped.

Mutants judged equivalent (no observable behaviour changes) are listed in :data:`EQUIVALENT`
with the reason; the report counts them apart. Everything else that survives is a gap in the
tests. The score is ``killed / (killed + survived - equivalent)``; ``--recheck`` verdicts
replace mutmut's for the survivors it re-ran.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / ".mutation"

#: Module (under ``supcon/``) -> the fast test files that guard it.
MODULES: dict[str, list[str]] = {
    "losses/tiled.py": [
        "tests/losses/test_tiled.py",
        "tests/losses/test_reference_gradients.py",
        "tests/losses/test_anchor_offset.py",
    ],
    "losses/sparse.py": [
        "tests/losses/test_mined_pairs.py",
        "tests/losses/test_reference_gradients.py",
        "tests/losses/test_anchor_offset.py",
    ],
    "evaluation/metrics.py": [
        "tests/evaluation/test_metrics.py",
        "tests/evaluation/test_metric_options.py",
        "tests/evaluation/test_clustering.py",
    ],
    "evaluation/knn.py": [
        "tests/evaluation/test_knn.py",
        "tests/evaluation/test_knn_order.py",
        "tests/evaluation/test_knn_threads.py",
        "tests/evaluation/test_knn_cuda_path.py",
    ],
    "losses/dense.py": [
        "tests/losses/test_supcon.py",
        "tests/losses/test_reference_gradients.py",
        "tests/losses/test_anchor_offset.py",
    ],
    "losses/structure.py": [
        "tests/losses/test_supcon.py",
        "tests/losses/test_reference_gradients.py",
        "tests/losses/test_mined_pairs.py",
        "tests/losses/test_anchor_offset.py",
        "tests/losses/test_structure.py",
    ],
    "losses/hcl.py": ["tests/losses/test_hcl.py", "tests/losses/test_reference_gradients.py"],
    "losses/swept.py": ["tests/losses/test_tiled.py", "tests/losses/test_mined_pairs.py"],
    "losses/functional.py": [
        "tests/losses/test_supcon.py",
        "tests/losses/test_tiled.py",
        "tests/losses/test_inputs.py",
        "tests/losses/test_reference_gradients.py",
        "tests/losses/test_two_rank_reduce.py",
        "tests/losses/test_functional_options.py",
    ],
    "losses/inputs.py": [
        "tests/losses/test_inputs.py",
        "tests/losses/test_supcon.py",
        "tests/losses/test_anchor_offset.py",
        "tests/losses/test_input_messages.py",
    ],
    "losses/memory.py": ["tests/losses/test_memory.py", "tests/losses/test_memory_checks.py"],
    "losses/diagnostics.py": [
        "tests/losses/test_diagnostics.py",
        "tests/losses/test_diagnostics_checks.py",
    ],
    # test_distributed.py reaches gather.py only in spawned ranks, which mutmut cannot map.
    "losses/gather.py": ["tests/losses/test_gather_rows.py"],
    "losses/supcon.py": [
        "tests/losses/test_supcon.py",
        "tests/losses/test_supcon_module_checks.py",
    ],
    "samplers/m_per_class.py": ["tests/test_samplers.py", "tests/test_m_per_class_plan.py"],
    "samplers/episodic.py": ["tests/test_samplers.py", "tests/test_episodic_checks.py"],
    "samplers/_common.py": ["tests/test_samplers.py", "tests/test_sampler_checks.py"],
    "miners.py": ["tests/test_miners.py", "tests/test_miner_checks.py"],
    "training/state.py": ["tests/training/test_state.py"],
    "training/checkpoint.py": [
        "tests/training/test_state.py",
        "tests/training/test_checkpoint_safety.py",
        "tests/training/test_checkpoint_messages.py",
        "tests/training/test_checkpoint_loading.py",
    ],
    "training/gradcache.py": ["tests/training/test_gradcache.py"],
}

_CPU = "device=None/omitted only differs on CUDA (tests/losses/test_gpu.py, GPU machines)"
_PERF = "performance only: the same values, more work"
_RESIZE = "torch.mm(out=...) resizes the wrong-shaped buffer: same values"
_CUDA_RNG = (
    "CUDA generator branch: never taken without CUDA (CPU-only here; set_rng_state_all of no "
    "device is a no-op); tests/training/test_gpu.py covers it on GPU machines"
)
_INT64_FULL = "np.full with a Python int fill value is int64 on 64-bit Linux"
_STRICT = "zip(strict=...) of sequences built with one entry per chunk / buffer: equal lengths"

#: Mutant name -> why it is equivalent (reviewed by hand; see ``--survivors``). Names are
#: mutmut's and stay valid while the module's source is unchanged.
EQUIVALENT: dict[str, str] = {
    "supcon.losses.diagnostics.x_effective_rank__mutmut_6": (
        "only square z changes branch, where z.T @ z and z @ z.T are both N x N with the same "
        "eigenvalues"
    ),
    **{
        f"supcon.losses.diagnostics.x_loss_bounds__mutmut_{n}": (
            "max=P never binds: k* <= P/2 since 1/x - 1/(e^x - 1) <= 1/2 (x = 2/tau), so "
            "ceil(k*) <= ceil(P/2) <= P"
        )
        for n in (63, 66, 72, 75)
    },
    **{
        f"supcon.losses.diagnostics.x_loss_bounds__mutmut_{n}": (
            "q is float64, so every expression with p (k_star, lower, g) promotes to float64; "
            "p holds integer counts, exact in the caller's dtype"
        )
        for n in (5, 7)
    },
    "supcon.losses.memory.xǁCrossBatchMemoryǁ_write__mutmut_2": (
        "with exactly size rows, rows[-size:] is all of them"
    ),
    "supcon.losses.memory.xǁCrossBatchMemoryǁ_write__mutmut_1": (
        "only a batch larger than the queue differs, and then only which slot each kept row "
        "sits in (a rotation, pointer consistent): the same rows, FIFO order and loss"
    ),
    **{f"supcon.losses.memory.xǁCrossBatchMemoryǁ_write__mutmut_{n}": _CPU for n in (15, 17)},
    **{
        f"supcon.samplers.episodic.xǁEpisodicSamplerǁ__init____mutmut_{n}": (
            "warnings.warn's category None / omitted defaults to UserWarning"
        )
        for n in (65, 68)
    },
    "supcon.samplers.episodic.xǁEpisodicSamplerǁ__init____mutmut_70": (
        "stacklevel=3: mutmut's trampoline adds a frame, so under mutmut it names the caller; "
        "test_episodic_checks.py's filename == __file__ check catches it in the plain suite"
    ),
    **{
        f"supcon.samplers.episodic.xǁEpisodicSamplerǁepisode__mutmut_{n}": (
            "Generator.choice tests replace for truth: None draws without replacement like False"
        )
        for n in (11, 20)
    },
    **{
        f"supcon.samplers.episodic.xǁEpisodicSamplerǁepisode__mutmut_{n}": (
            "numpy reads any negative reshape size as the inferred one: reshape(-2) == reshape(-1)"
        )
        for n in (29, 32)
    },
    **{
        f"supcon.losses.supcon.xǁSupConLossǁforward__mutmut_{n}": (
            "block_size only sets the tile rows: the same values (test_tiled.py checks block "
            "sizes), more or less memory"
        )
        for n in (14, 29)
    },
    **{
        f"supcon.losses.supcon.xǁSupConLossǁforward__mutmut_{n}": (
            "gather_distributed is a no-op outside a process group of >1 ranks; "
            "test_distributed.py covers it in spawned ranks, which mutmut cannot map"
        )
        for n in (15, 30)
    },
    **{f"supcon.losses.tiled.x__sweep_keys__mutmut_{n}": _CPU for n in (50, 53, 67, 70, 85, 89)},
    **{f"supcon.losses.tiled.x__sweep_masked__mutmut_{n}": _CPU for n in (15, 18, 28, 32)},
    **{f"supcon.losses.tiled.x__key_sums__mutmut_{n}": _CPU for n in (5, 9)},
    # on_cpu flipped / never true: only the skip of tiles without counted anchors changes.
    **{f"supcon.losses.tiled.x__sweep_keys__mutmut_{n}": _PERF for n in (73, 78, 79, 80, 154)},
    **{f"supcon.losses.tiled.x__sweep_masked__mutmut_{n}": _PERF for n in (10, 21, 22, 23)},
    **{f"supcon.losses.tiled.x__sweep_keys__mutmut_{n}": _RESIZE for n in (86, 87, 113)},
    **{f"supcon.losses.tiled.x__sweep_masked__mutmut_{n}": _RESIZE for n in (29, 30)},
    **{
        f"supcon.losses.tiled.x__sweep_keys__mutmut_{n}": (
            "changes row i's gradient only along z_i, which the L2 normalisation's backward "
            "projects out"
        )
        for n in (185, 187)
    },
    **{
        f"supcon.losses.sparse.x__csr__mutmut_{n}": (
            "check_invariants only validates (the sorted unique pairs satisfy CSR's invariants)"
        )
        for n in (14, 19, 20)
    },
    "supcon.losses.sparse.x__csr__mutmut_4": (
        "ignores every warning of a block that raises only PyTorch's CSR beta warning"
    ),
    "supcon.losses.sparse.xǁSparsePairsǁfrom_structure__mutmut_1": (
        "assert and -> or: pos_pairs and neg_pairs are always set together"
    ),
    "supcon.losses.tiled.x__sweep_keys__mutmut_21": (
        "bincount without minlength: every compacted key occurs, so the length is K anyway"
    ),
    "supcon.losses.tiled.x__sweep_keys__mutmut_46": (
        "inv_pos = 1 for uncounted (singleton) anchors: their own-term +z_i and key-sum term "
        "-z_i cancel, and their positive dot product is 0"
    ),
    **{
        f"supcon.losses.tiled.x__sweep_{kind}__mutmut_{n}": 'float("-INF") is float("-inf")'
        for kind, n in (("keys", 125), ("masked", 106), ("masked", 115))
    },
    "supcon.losses.tiled.x__sweep_masked__mutmut_94": _RESIZE,
    **{
        f"supcon.losses.tiled.x__sweep_masked__mutmut_{n}": (
            "drops a cast whose result is cast to the input dtype later anyway"
        )
        for n in (168, 216)
    },
    **{
        f"supcon.losses.tiled.x__sweep_masked__mutmut_{n}": (
            "the zero-anchor branch is unreachable: empty batches are rejected before any path"
        )
        for n in range(206, 216)
    },
    **{
        f"supcon.losses.tiled.x__sweep_keys__mutmut_{n}": (
            "drops a cast whose float64 result is cast to the input dtype later anyway"
        )
        for n in (170, 192, 196)
    },
    **{
        f"supcon.losses.structure.xǁPairStructureǁnot_self__mutmut_{n}": _CPU
        for n in (5, 8, 11, 13)
    },
    "supcon.losses.structure.xǁPairStructureǁpositives_per_anchor__mutmut_1": (
        "default block_rows 4097: rows per block only; " + _PERF
    ),
    "supcon.evaluation.metrics.x__score__mutmut_19": (
        "cumsum of a bool array is int64 by default on 64-bit Linux"
    ),
    "supcon.evaluation.metrics.x__score__mutmut_25": "astype(None) is astype(float64)",
    **{
        f"supcon.evaluation.metrics.x__list_sizes__mutmut_{n}": _INT64_FULL
        for n in (27, 30, 36, 39)
    },
    "supcon.evaluation.metrics.x__list_sizes__mutmut_49": (
        "span + 2: any span above the largest key still encodes (label, key) pairs uniquely"
    ),
    **{
        f"supcon.evaluation.metrics.x__lookup__mutmut_{n}": (
            "the empty-table branch is unreachable: tables count gallery labels / keys, and an "
            "empty gallery is rejected first"
        )
        for n in (3, 4, 5, 6)
    },
    "supcon.evaluation.metrics.x__lookup__mutmut_9": (
        "clip's lower bound 0 -> None: searchsorted never returns a negative position"
    ),
    "supcon.evaluation.metrics.x__score__mutmut_16": (
        "cumsum of a bool array is int64 by default on 64-bit Linux"
    ),
    **{
        f"supcon.evaluation.metrics.x__codes__mutmut_{n}": (
            "reshape(None) / reshape(-2) of the 1-D inverse keep its shape"
        )
        for n in (11, 13)
    },
    "supcon.evaluation.metrics.x__codes__mutmut_18": (
        "start = len(a) vs +=: the same offsets for the one or two arrays _codes is called with"
    ),
    **{
        f"supcon.evaluation.metrics.x__problem__mutmut_{n}": (
            "np.ones(n) without dtype=bool: cast with astype(bool) two lines later"
        )
        for n in (51, 53, 69, 71)
    },
    **{
        f"supcon.evaluation.metrics.x__problem__mutmut_{n}": (
            "astype(None) keeps the 0/1 mask as floats: any, all and flatnonzero treat nonzero "
            "as True, as astype(bool) would"
        )
        for n in (87, 88)
    },
    "supcon.evaluation.metrics.x__problem__mutmut_102": (
        "np.arange of a Python int is int64 on 64-bit Linux"
    ),
    "supcon.evaluation.metrics.x__problem__mutmut_104": (
        "np.arange of a Python int is int64 on 64-bit Linux"
    ),
    "supcon.evaluation.metrics.x__problem__mutmut_128": (
        "leave-one-out keys np.arange(n) without sources: each item is excluded from its own "
        "list, which the symmetric search does already (the same lists, R and L)"
    ),
    **{
        f"supcon.evaluation.metrics.x__problem__mutmut_{n}": (
            "symmetric=None for False: the flag is only tested for truth"
        )
        for n in (142, 232)
    },
    "supcon.evaluation.metrics.x__problem__mutmut_204": (
        "and -> or: both or neither of source_ids / gallery_source_ids is enforced just above"
    ),
    **{
        f"supcon.evaluation.metrics.x_retrieval_metrics__mutmut_{n}": _PERF
        for n in (
            # default chunk size; depth at least R without at_r; either search layout
            # (test_any_chunk_size_and_either_search_layout_give_identical_results)
            4,
            102,
            135,
            136,
            137,
            # search_self_chunks' order / block / chunk sizes, by_depth's sort kind
            145,
            151,
            152,
            153,
            155,
            157,
            159,
            168,
            169,
            181,
            183,
            185,
            # rows per chunk sized from a shallower row: more rows, the same lists
            220,
        )
    },
    "supcon.evaluation.metrics.x_retrieval_metrics__mutmut_103": (
        "max(clip(wanted), 1): clip(wanted) >= 1 already"
    ),
    **{
        f"supcon.evaluation.metrics.x_retrieval_metrics__mutmut_{n}": _CPU
        for n in (40, 41, 42, 44, 45, 194, 195, 196, 197, 198, 199, 200, 201, 202, 203, 241)
    },
    "supcon.evaluation.metrics.x__per_class__mutmut_17": (
        "bincount without minlength: inverse comes from np.unique, so every class occurs"
    ),
    "supcon.evaluation.metrics.x__per_class__mutmut_22": (
        "label.item() always: labels are numpy scalars, which all have .item()"
    ),
    **{f"supcon.training.state.x_capture_rng__mutmut_{n}": _CUDA_RNG for n in (35, 36, 37, 38)},
    **{f"supcon.training.state.x_restore_rng__mutmut_{n}": _CUDA_RNG for n in range(30, 37)},
    "supcon.training.state.x_restore_rng__mutmut_18": (
        "astype(None) gives float64 keys; np.random.set_state casts them to uint32 itself, and "
        "keys < 2**32 are exact in float64"
    ),
    **{
        f"supcon.training.gradcache.xǁ_RngStateǁ__init____mutmut_{n}": _CUDA_RNG
        for n in (1, 3, 4, 6, 8, 9)
    },
    **{
        f"supcon.training.gradcache.xǁ_RngStateǁrestore__mutmut_{n}": _CUDA_RNG
        for n in (3, 4, 5, 6)
    },
    **{
        f"supcon.training.gradcache.x_cached_backward__mutmut_{n}": _STRICT
        for n in (47, 51, 52, 72, 75, 76)
    },
    "supcon.samplers._common.x_as_label_array__mutmut_31": (
        'dtype.kind is one character, never "X": in "XXiuXX" is in "iu"'
    ),
    **{
        f"supcon.samplers._common.x_as_label_array__mutmut_{n}": (
            "astype(int64) copy=None/True/default vs False: only whether an int64 input is copied"
        )
        for n in (38, 40, 41)
    },
    "supcon.samplers._common.x_indices_by_class__mutmut_7": (
        'numpy reads the sort kind by its first letter, case-insensitively: "STABLE" is "stable"'
    ),
    **{
        f"supcon.losses.dense.x_dense_anchor_losses__mutmut_{n}": 'float("-INF") is float("-inf")'
        for n in (19, 39)
    },
    **{
        f"supcon.losses.dense.x_dense_anchor_losses__mutmut_{n}": (
            "a 0-dim zero of the default dtype does not change torch.where's result dtype "
            "(0-dim tensors do not promote a same-category operand)"
        )
        for n in (68, 71)
    },
    **{f"supcon.losses.dense.x_dense_anchor_losses__mutmut_{n}": _CPU for n in (69, 72)},
    **{
        f"supcon.losses.structure.xǁPairStructureǁblock_masks__mutmut_{n}": (
            "_clear_self ignores stop"
        )
        for n in (21, 27, 50)
    },
    "supcon.losses.structure.x_counted_anchors__mutmut_4": (
        "also masks in trivial anchors (denominator = their one positive): their term is "
        "log(e^l / e^l) = 0 with gradient 1 - 1 = 0, and the mean's divisor comes from "
        "AnchorCounts, which still leaves them out"
    ),
    **{
        f"supcon.losses.structure.xǁ_SortedPairsǁbuild__mutmut_{n}": (
            "unstable argsort: only the order of one anchor's pairs changes, and they are "
            "scattered into a boolean block or counted"
        )
        for n in (11, 12)
    },
    **{f"supcon.losses.structure.xǁ_SortedPairsǁbuild__mutmut_{n}": _CPU for n in (16, 18)},
    **{f"supcon.losses.structure.xǁ_SortedPairsǁscatter__mutmut_{n}": _CPU for n in (8, 12)},
    "supcon.losses.structure.xǁ_SortedPairsǁscatter__mutmut_14": (
        "hi >= lo: with hi == lo the indexed assignment is over zero pairs (a no-op)"
    ),
    "supcon.losses.swept.x_swept_sum__mutmut_2": (
        _PERF + " (the sweep also forms a gradient nobody asked for)"
    ),
    "supcon.losses.swept.xǁSweptSumǁforward__mutmut_10": (
        "saves None instead of a 0-dim placeholder when there is no gradient; backward is "
        "never reached then (see the no-tracking branch)"
    ),
    "supcon.losses.swept.xǁSweptSumǁbackward__mutmut_11": (
        "grad_output.to(None): it already has the sum's dtype, which is the gradient's (z's)"
    ),
    **{
        f"supcon.losses.swept.xǁSweptSumǁbackward__mutmut_{n}": (
            "the no-gradient-tracking branch is unreachable: without tracking (no_grad, or z "
            "not requiring grad) SweptSum's output has no grad_fn, so backward never runs"
        )
        for n in (6, 7, 8)
    },
    **{
        name: 'float("-INF") / float("INF") is float("-inf") / float("inf")'
        for name in (
            "supcon.losses.hcl.x__log_weighted_negatives__mutmut_39",
            "supcon.losses.hcl.x_check_beta__mutmut_11",
            "supcon.losses.hcl.x_hcl_log_denominator__mutmut_10",
        )
    },
    **{
        f"supcon.losses.hcl.x_hcl_log_denominator__mutmut_{n}": (
            "a 0-dim -inf of the default dtype does not change torch.where's result dtype"
        )
        for n in (3, 6)
    },
    **{f"supcon.losses.hcl.x_hcl_log_denominator__mutmut_{n}": _CPU for n in (4, 7)},
    **{
        f"supcon.losses.sparse.x__csr__mutmut_{n}": (
            "warnings.filterwarnings matches message case-insensitively"
        )
        for n in (8, 9)
    },
    "supcon.losses.functional.x__anchor_loss_sum__mutmut_1": (
        "default force_sparse=True: its one caller always passes force_sparse"
    ),
    "supcon.losses.functional.x_l2_normalize__mutmut_21": "F.normalize's default dim is 1",
    **{
        f"supcon.losses.functional.x__warn_no_negatives_once__mutmut_{n}": (
            "stacklevel: not measurable under mutmut (its trampoline adds a frame); "
            "test_loss_warnings_point_at_the_callers_line checks it in the plain test run"
        )
        for n in (9, 17)
    },
    **{
        f"supcon.losses.functional.x_{name}": reason
        for names, reason in (
            (
                (
                    "_anchor_loss_sum__mutmut_58",
                    "_reduce__mutmut_6",
                    "_reduce__mutmut_9",
                ),
                _CPU,
            ),
            (
                ("_reduce__mutmut_5", "_reduce__mutmut_8"),
                "torch.tensor of Python ints is int64 without dtype=",
            ),
            (
                ("_reduce__mutmut_44",),
                "the distributed mean in float64: supcon_loss_with_stats casts the loss to the "
                "embeddings' dtype on return (value and gradient)",
            ),
            (
                ("supcon_loss_with_stats__mutmut_58",),
                "grad_cols = every column when references do not need grad: their gradient "
                "is formed and dropped (" + _PERF + ")",
            ),
        )
        for name in names
    },
    **{
        f"supcon.losses.functional.x__warn_no_positives_once__mutmut_{n}": (
            "stacklevel: not measurable under mutmut (its trampoline adds a frame); "
            "test_loss_warnings_point_at_the_callers_line checks it in the plain test run"
        )
        for n in (9, 18)
    },
    "supcon.training.checkpoint.x__kind__mutmut_38": 'codec names are case-insensitive: "UTF-8"',
    **{
        f"supcon.training.checkpoint.x_load_checkpoint__mutmut_{n}": (
            'the "central directory" test is unreachable: torch says so only for a zip without '
            "its end record, which zipfile.is_zipfile refuses first (as truncated)"
        )
        for n in (71, 72, 74)
    },
    **{
        f"supcon.miners.x_{fn}__mutmut_{n}": _CPU
        for fn, n in (
            ("_check_inputs", 9),
            ("_check_inputs", 11),
            ("flatten_views", 8),
            ("flatten_views", 10),
            ("positive_pairs", 32),
            ("positive_pairs", 34),
            ("positive_pairs", 45),
            ("positive_pairs", 47),
        )
    },
    "supcon.miners.x__normalize__mutmut_4": "F.normalize's default dim is 1",
    "supcon.miners.x_positive_pairs__mutmut_14": "torch.searchsorted's default is right=False",
    "supcon.miners.x_positive_pairs__mutmut_29": (
        "repeat_interleave(counts) repeats arange(len(counts)) = arange(len(anchor_labels))"
    ),
    **{
        f"supcon.miners.x__gather_rows__mutmut_{n}": (
            "sizes=None: all_gather_variable_no_grad exchanges the sizes itself (same rows, one "
            "more collective)"
        )
        for n in (8, 10, 12, 14)
    },
    **{f"supcon.miners.x__gather_rows__mutmut_{n}": _CPU for n in (3, 5)},
    **{
        f"supcon.samplers.m_per_class.xǁMPerClassSamplerǁ{name}": reason
        for names, reason in (
            (
                ("__iter____mutmut_13", "_epoch_chunks__mutmut_54"),
                "reshape(-2, ...): numpy reads any negative size as the inferred one",
            ),
            (
                ("__init____mutmut_51", "__init____mutmut_53", "global_plan__mutmut_41"),
                "np.array / np.full of Python ints is int64 on 64-bit Linux",
            ),
            (("global_plan__mutmut_44",), "np.full with a Python int fill is int64 here"),
            (
                ("global_plan__mutmut_46", "global_plan__mutmut_132"),
                "the filler marker is read only as rows < 0, and filler slots are overwritten "
                "by fresh chunks (so what clip picks for them is never used)",
            ),
            (
                ("global_plan__mutmut_37",),
                "now's start value is read only when a drawn class is pushed back before any "
                "heap pop: then every class was forced, and forced classes stay forced (their "
                "heap entries are skipped)",
            ),
            (
                tuple(f"global_plan__mutmut_{n}" for n in (62, 63, 64)),
                "the text of an invariant assert that never fires",
            ),
            (
                tuple(f"global_plan__mutmut_{n}" for n in (80, 83, 85)),
                "setdiff1d of arange and distinct classes: sorted and unique either way",
            ),
            (
                ("_fresh_chunk__mutmut_12", "global_plan__mutmut_90"),
                "rng.choice(replace=None): numpy tests replace for truth, None is False",
            ),
            (
                tuple(f"global_plan__mutmut_{n}" for n in (134, 136, 140)),
                "zip(strict=...) of np.nonzero's two equal-length arrays",
            ),
            (
                ("_epoch_chunks__mutmut_38",),
                "sizes < m vs <= m under pad: a class of exactly m samples has no padded slot",
            ),
            (
                ("_epoch_chunks__mutmut_44",),
                "rng.integers(high) is rng.integers(0, high): same draws from the same stream",
            ),
            (
                ("_fresh_chunk__mutmut_1",),
                "a class of exactly m samples: a uniformly random permutation of it either way "
                "(another draw of the same distribution)",
            ),
        )
        for name in names
    },
    **{
        f"supcon.evaluation.knn.x_{name}": reason
        for names, reason in (
            (
                ("_ids_of__mutmut_8",),
                "_ids_of only decodes _search_partition's positions, which are never missing",
            ),
            (
                ("_search_partition__mutmut_21", "_search_partition__mutmut_24"),
                "np.full with a Python int fill is int64 on 64-bit Linux",
            ),
            (
                tuple(f"_search_partition__mutmut_{n}" for n in (65, 73, 83, 94)),
                "numpy's default axis -1 is axis 1 of these 2-D arrays",
            ),
            (
                tuple(f"_search_partition__mutmut_{n}" for n in (101, 102, 104)),
                "flags more rows for the tie fix-up, which recomputes a row exactly: " + _PERF,
            ),
            (
                ("_search_partition__mutmut_37",),
                "range without step: one query row per product, " + _PERF,
            ),
            (
                tuple(f"search_blocks__mutmut_{n}" for n in range(7, 21)),
                "the CUDA dispatch: never taken without CUDA (tests/evaluation/test_knn.py's "
                "gpu test covers it on GPU machines)",
            ),
            (
                ("search_blocks__mutmut_21",),
                "k = HEAP_MAX_K by partitioning instead of heaps: both exact, ties by id",
            ),
            (
                tuple(f"search_blocks__mutmut_{n}" for n in (1, 59, 65, 78, 80, 135, 137)),
                "block size or thread counts only: " + _PERF,
            ),
            (
                tuple(f"search_blocks__mutmut_{n}" for n in (67, 73, 76)),
                "query slices as floats cast by int(), or more slices than threads: the same "
                "rows, each in exactly one slice",
            ),
            (
                ("search_blocks__mutmut_88", "search_blocks__mutmut_90"),
                "torch.empty's default dtype is float32",
            ),
            (
                tuple(f"_add_columns__mutmut_{n}" for n in (2, 3, 4, 6, 11)),
                "first / last keep their defaults at every call site (0 and the whole block)",
            ),
            (
                ("_add_columns__mutmut_18",),
                "also offers scores equal to a heap's worst, which FAISS's strict comparison "
                "rejects",
            ),
            (
                ("_add_columns__mutmut_28", "_add_columns__mutmut_30", "_add_columns__mutmut_33"),
                "the order of one column's candidates within one insertion call (numpy reads "
                '"STABLE" as "stable"): the heap keeps the same k best',
            ),
            (
                ("_add_columns__mutmut_31", "_add_columns__mutmut_40"),
                "argsort of the same column numbers as float64 / bincount without minlength: "
                "the same order and the same non-zero counts",
            ),
            (
                ("_add_columns__mutmut_65", "search_self_chunks__mutmut_114"),
                "NaN instead of -inf: never enters a FAISS heap (every comparison is false)",
            ),
            (
                (
                    *(f"_add_columns__mutmut_{n}" for n in (75, 78, 85, 87)),
                    *(f"_keys__mutmut_{n}" for n in (5, 7, 13, 15)),
                ),
                "integer dtype defaults (int64 here), and key equality is the same in any "
                "integer dtype",
            ),
            (tuple(f"_keys__mutmut_{n}" for n in (4, 6, 9, 11)), _CPU),
            (
                tuple(f"_seed_diagonal__mutmut_{n}" for n in (7, 8, 9, 10, 15, 16, 17, 18, 20, 21)),
                "which tiles seed the heaps first (each seeded tile is hidden, so every score is "
                "offered once): " + _PERF,
            ),
            (
                ("_seed_diagonal__mutmut_31",),
                "hides a seeded tile with NaN instead of -inf: NaN never enters a heap",
            ),
            (
                ("_sort_ties__mutmut_4",),
                "sorts every row with a valid id, not only rows with ties: " + _PERF,
            ),
            (
                tuple(f"_sort_ties__mutmut_{n}" for n in (18, 30, 38)),
                "numpy's default axis -1 is axis 1 of these 2-D arrays",
            ),
            (
                ("search_self__mutmut_15", "search_self__mutmut_20"),
                "order dropped: only speed depends on it (documented)",
            ),
            (
                (
                    "search_self__mutmut_1",
                    "search_self__mutmut_21",
                    *(f"search_self_chunks__mutmut_{n}" for n in (1, 2, 58, 64, 66, 145, 147)),
                ),
                "block size, chunk size or thread counts only: " + _PERF,
            ),
            (
                ("search_self_chunks__mutmut_42",),
                "a block start at every row: the extra blocks start past the end and are empty",
            ),
            (
                ("search_self_chunks__mutmut_69", "search_self_chunks__mutmut_71"),
                "torch.empty's default dtype is float32",
            ),
        )
        for name in names
    },
    **{
        f"supcon.evaluation.knn.x__lowest_ids_at_cut__mutmut_{n}": (
            "recomputes more rows than those whose tie straddles the cut (the recomputation "
            "is exact for any row; -inf slots become NO_NEIGHBOUR whatever ids they hold): " + _PERF
        )
        for n in (7, 8, 11, 16)
    },
    **{
        f"supcon.evaluation.knn.x__search_cuda__mutmut_{n}": _CPU
        for n in (3, 5, 8, 10, 13, 15, 17, 19)
    },
    **{f"supcon.evaluation.knn.x__search_cuda__mutmut_{n}": _INT64_FULL for n in (36, 39)},
    **{
        f"supcon.evaluation.knn.x__search_cuda__mutmut_{n}": (
            "topk / argsort / sort default to the last dimension, dim 1 of these 2-D blocks"
        )
        for n in (79, 91, 110)
    },
    **{f"supcon.losses.gather.x_gather_rows__mutmut_{n}": _CPU for n in (11, 16)},
    "supcon.losses.gather.x_gather_rows__mutmut_39": (
        "compact - rank * padded: each rank's sample ids still get a range of their own "
        "(below 0), and keys are only compared for equality"
    ),
    "supcon.losses.gather.x_gather_rows__mutmut_53": (
        "only the dtype handed to the collective changes (bool instead of uint8); the values "
        "gathered are the same (the two-process tests run the real collective)"
    ),
    **{
        f"supcon.losses.inputs.x_{name}": reason
        for names, reason in (
            (
                (
                    "as_long_labels__mutmut_3",
                    "as_long_labels__mutmut_5",
                    "_check_pairs__mutmut_15",
                    "_check_pairs__mutmut_17",
                    "attach_references__mutmut_41",
                    "attach_references__mutmut_44",
                    "attach_references__mutmut_46",
                    "attach_references__mutmut_52",
                    "flatten_batch__mutmut_15",
                    *(
                        f"flatten_batch__mutmut_{n}"
                        for n in (99, 101, 107, 145, 162, 164, 174, 176)
                    ),
                    "prepare_batch__mutmut_29",
                    "prepare_batch__mutmut_55",
                ),
                _CPU,
            ),
            (("check_temperature__mutmut_13",), 'float("INF") is float("inf") (case-blind)'),
            (("prepare_batch__mutmut_39",), "torch.cat's default dim is 0"),
            (
                ("prepare_batch__mutmut_45",),
                "1-D reference labels are int64 already (as_long_labels), like the keys",
            ),
            (
                ("flatten_batch__mutmut_1", "flatten_batch__mutmut_2"),
                "default contrast_mode: prepare_batch, its one caller, always passes it",
            ),
            (
                tuple(f"check_embeddings__mutmut_{n}" for n in (11, 16, 17, 20, 21)),
                "a zero-size dimension means numel() == 0, refused as empty first: the "
                "dimension-0 branch and shape[1] == 0 are unreachable",
            ),
        )
        for name in names
    },
}

_PYTEST_ARGS = ["-p", "no:nbmake", "-p", "no:cacheprovider", "-o", "addopts=", "-x", "-q"]

#: Extra pytest arguments per module: the two-process tests (``dist``) take ~10 s per mutant
#: and reach the sampler only in spawned children; the ``replicas``/``rank`` logic they check
#: is covered in-process by explicit ``num_replicas``/``rank`` tests.
EXTRA_ARGS: dict[str, list[str]] = {
    "samplers/m_per_class.py": ["-m", "not dist"],
    "samplers/episodic.py": ["-m", "not dist"],
}


def _pytest_args(module: str) -> list[str]:
    return _PYTEST_ARGS + EXTRA_ARGS.get(module, [])


def _slug(module: str) -> str:
    return module.removesuffix(".py").replace("/", ".")


def _pyproject(module: str) -> str:
    base = (ROOT / "pyproject.toml").read_text()
    base = re.sub(r"(?ms)^\[tool\.mutmut\].*?(?=^\[|\Z)", "", base)
    tests = ", ".join(json.dumps(t) for t in MODULES[module])
    return (
        base
        + "\n[tool.mutmut]\n"
        + 'source_paths = ["supcon"]\n'
        + f'only_mutate = ["supcon/{module}"]\n'
        + f"pytest_add_cli_args = {json.dumps(_pytest_args(module))}\n"
        + f"pytest_add_cli_args_test_selection = [{tests}]\n"
        + "use_git_change_detection = false\n"
        + 'also_copy = ["recipes"]\n'
    )


def _prepare(module: str) -> Path:
    work = WORK / _slug(module)
    work.mkdir(parents=True, exist_ok=True)
    for name in ("supcon", "tests", "recipes"):
        target = work / name
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(ROOT / name, target, ignore=shutil.ignore_patterns("__pycache__"))
    (work / "pyproject.toml").write_text(_pyproject(module))
    return work


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)  # mutmut puts its mutants/ copy first on sys.path itself
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    return env


def run(module: str) -> int:
    """Run mutmut on one module; returns mutmut's exit status."""
    work = _prepare(module)
    print(f"== {module}: mutmut run in {work}", flush=True)
    cmd = [sys.executable, "-m", "mutmut", "run", "--max-children", "1"]
    with open(work / "mutmut.log", "w") as log:
        code = subprocess.call(cmd, cwd=work, env=_env(), stdout=log, stderr=subprocess.STDOUT)
    if code:
        print(f"   mutmut exited with {code}; see {work / 'mutmut.log'}", flush=True)
    return code


def results(module: str) -> dict[str, str] | None:
    """``{mutant name: status}`` of the last run on ``module`` (None if never run)."""
    meta = WORK / _slug(module) / "mutants" / "supcon" / (module + ".meta")
    if not meta.exists():
        return None
    for _ in range(10):  # mutmut rewrites the file while it runs
        try:
            codes = json.loads(meta.read_text()).get("exit_code_by_key", {})
            break
        except json.JSONDecodeError:
            time.sleep(0.5)
    else:
        raise RuntimeError(f"cannot read {meta}; try again")
    status = {1: "killed", 3: "killed", 0: "survived", 36: "timeout", 24: "timeout", -24: "timeout"}
    status |= {152: "timeout", 255: "timeout", 33: "no tests", 5: "no tests", None: "not run"}
    status |= {-11: "killed"}  # the tests crashed (SIGSEGV in faiss): the mutant is detected
    return {name: status.get(code, f"other({code})") for name, code in codes.items()}


def _recheck_path(module: str) -> Path:
    return WORK / _slug(module) / "recheck.json"


def recheck(
    module: str,
    only: str | None = None,
    select: str | None = None,
    tests_at: str | None = None,
    files: list[str] | None = None,
) -> dict[str, str]:
    """Re-run each survivor (and "no tests" mutant) in a fresh process; store the verdicts.

    mutmut runs every mutant in a child forked from a process that already imported torch and
    ran the suite; a fresh ``python -m pytest`` per survivor (the mutant picked by
    ``MUTANT_UNDER_TEST``, as mutmut does) confirms the verdict and picks up tests added since
    the run. ``{mutant: "killed" | "survived"}`` goes to ``.mutation/<module>/recheck.json``.

    The tests must pass on the run's unmutated sources, else every mutant would look killed:
    they run once without a mutant first, and the recheck stops if they fail. ``tests_at`` (a
    git commit) takes ``tests/`` from that commit instead of the working tree, for a run made
    before later source changes that the current tests rely on.
    """
    work = WORK / _slug(module)
    res = results(module) or {}
    # A copy of mutmut's mutated sources with today's tests (mutmut may still be running).
    mutants = work / "recheck"
    shutil.rmtree(mutants, ignore_errors=True)
    ignore = shutil.ignore_patterns("__pycache__")
    shutil.copytree(work / "mutants" / "supcon", mutants / "supcon", ignore=ignore)
    shutil.copytree(ROOT / "recipes", mutants / "recipes", ignore=ignore)
    if tests_at is None:
        shutil.copytree(ROOT / "tests", mutants / "tests", ignore=ignore)
    else:
        archive = subprocess.run(
            ["git", "archive", tests_at, "tests"], cwd=ROOT, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(mutants)], input=archive, check=True)
    (mutants / "pyproject.toml").write_text((work / "pyproject.toml").read_text())
    base = [sys.executable, "-m", "pytest", *_pytest_args(module), *(files or MODULES[module])]
    if select:  # only the tests aimed at these mutants (a kill counts; a pass is re-run)
        base += ["-k", select]
    narrow = bool(select or files)
    clean = subprocess.call(
        base, cwd=mutants, env=_env() | {"MUTANT_UNDER_TEST": ""}, stdout=subprocess.DEVNULL
    )
    if clean != 0:
        print(f"   {module}: the tests fail without a mutant (exit {clean}); no recheck")
        return {}
    path = _recheck_path(module)
    verdicts = json.loads(path.read_text()) if path.exists() else {}
    for name, status in sorted(res.items()):
        if status not in ("survived", "no tests") or name in verdicts or name in EQUIVALENT:
            continue
        if only is not None and only not in name:
            continue
        env = _env() | {"MUTANT_UNDER_TEST": name}
        code = subprocess.call(
            base, cwd=mutants, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        if code == 0 and narrow:
            continue  # survived a narrow selection: no verdict yet
        verdicts[name] = "survived" if code == 0 else "killed"
        print(f"   {name}: {verdicts[name]}", flush=True)
        path.write_text(json.dumps(verdicts, indent=1, sort_keys=True))
    return verdicts


def _with_rechecks(module: str, res: dict[str, str]) -> dict[str, str]:
    path = _recheck_path(module)
    if not path.exists():
        return res
    return res | {k: v for k, v in json.loads(path.read_text()).items() if k in res}


def summary(module: str) -> dict[str, object] | None:
    """Counts of the last run on ``module`` with ``--recheck`` verdicts applied (None: not run).

    ``killed`` counts timeouts too; ``survived`` excludes the reviewed equivalents; ``other`` is
    mutants with no covering test or not run; ``score`` is ``killed / (killed + survived)`` in %.
    """
    res = results(module)
    if res is None:
        return None
    res = _with_rechecks(module, res)
    killed = sum(s in ("killed", "timeout") for s in res.values())
    survivors = [n for n, s in res.items() if s == "survived"]
    # Reviewed as equivalent: survivors, and mutants no selected test reaches (CUDA-only or
    # spawned-rank code) whose review is recorded too.
    equivalent = sum(n in EQUIVALENT for n, s in res.items() if s in ("survived", "no tests"))
    survived = sum(n not in EQUIVALENT for n in survivors)
    real = killed + survived
    return {
        "mutants": len(res),
        "killed": killed,
        "survived": survived,
        "equivalent": equivalent,
        "other": len(res) - killed - survived - equivalent,
        "score": round(100 * killed / real, 1) if real else None,
    }


def report(modules: list[str]) -> str:
    """A Markdown table: killed / survived / equivalent / score per module."""
    lines = [
        "| module | mutants | killed | survived | equivalent | no tests / not run | score |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for module in modules:
        row = summary(module)
        if row is None:
            lines.append(f"| `{module}` | not run | | | | | |")
            continue
        score = "-" if row["score"] is None else f"{row['score']:.1f} %"
        lines.append(
            f"| `{module}` | {row['mutants']} | {row['killed']} | {row['survived']} | "
            f"{row['equivalent']} | {row['other']} | {score} |"
        )
    return "\n".join(lines)


def write_json(modules: list[str], path: Path) -> None:
    """The report's numbers as JSON (``null`` for modules not run), with the measured commit."""
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    from supcon.io import atomic_write_json

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"commit": commit, "modules": {m: summary(m) for m in modules}})


def survivors(module: str) -> None:
    """Print each surviving mutant's diff (and the recorded reason if it is equivalent)."""
    res = _with_rechecks(module, results(module) or {})
    work = WORK / _slug(module)
    for name, status in sorted(res.items()):
        if status != "survived":
            continue
        print(f"## {name}" + (f"  [equivalent: {EQUIVALENT[name]}]" if name in EQUIVALENT else ""))
        subprocess.call([sys.executable, "-m", "mutmut", "show", name], cwd=work, env=_env())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "modules", nargs="*", help=f"modules under supcon/ (default: all {len(MODULES)})"
    )
    parser.add_argument("--report", action="store_true", help="only print the results table")
    parser.add_argument("--survivors", action="store_true", help="print surviving mutants")
    parser.add_argument(
        "--recheck",
        action="store_true",
        help="re-run the survivors of earlier runs one by one in fresh processes",
    )
    parser.add_argument("--only", help="with --recheck: mutants whose name contains this")
    parser.add_argument("--select", help="with --recheck: a pytest -k expression")
    parser.add_argument("--tests-at", help="with --recheck: take tests/ from this git commit")
    parser.add_argument(
        "--files", nargs="+", help="with --recheck: only these test files (a kill counts)"
    )
    parser.add_argument("--json", type=Path, help="also write the table's numbers to this file")
    args = parser.parse_args(argv)
    unknown = [m for m in args.modules if m not in MODULES]
    if unknown:
        print(f"unknown module(s) {unknown}; choose from {sorted(MODULES)}", file=sys.stderr)
        return 2
    modules = args.modules or list(MODULES)
    if args.survivors:
        for module in modules:
            survivors(module)
        return 0
    if args.recheck:
        for module in modules:
            if results(module) is not None:
                recheck(module, args.only, args.select, args.tests_at, args.files)
    elif not args.report:
        for module in modules:
            run(module)
    print(report(modules))
    if args.json is not None:
        write_json(modules, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

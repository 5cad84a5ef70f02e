"""The ops' device constants (hrnet_fast/ops/_device_cache.py): decode_heatmaps' blur weights and flip
permutations, crop_boxes' image tables.

On the CPU: the bounded LRU (one entry evicted at a time, never wholesale), and the CUDA rules with
stand-ins for the CUDA calls: a miss inside a capture raises, an entry used in a capture is never evicted,
a use on another stream waits for the upload and is told to the allocator once per stream. The
gpu-marked tests run the same on a GPU.
"""
from __future__ import annotations

import pytest
import torch

import hrnet_fast
from hrnet_fast.ops import OPS, _device_cache
from hrnet_fast.ops._device_cache import DeviceCache

# the ops' modules (the package attributes of the same names are the ops)
crop_module = OPS["crop_boxes"].module
decode_module = OPS["decode_heatmaps"].module

CUDA0 = torch.device("cuda", 0)


class FakeCudaCache(DeviceCache):
    """A DeviceCache whose CUDA calls are stand-ins: the 'device tensor' is the host tensor."""

    def __init__(self, name="test constants", limit=4):
        super().__init__(name, limit)
        self.capturing = False
        self.stream = "s0"
        self.uploads, self.shared = [], []

    def _capturing(self, device):
        return self.capturing

    def _current_stream(self, device):
        return self.stream

    def _upload(self, host, device):
        self.uploads.append((host.tolist(), self.stream))
        return host, self.stream, f"event{len(self.uploads)}"

    def _share(self, entry, stream):
        self.shared.append((entry.event, stream))


def _values(v):
    return lambda: torch.tensor([v])


# ------------------------------------------------------------------------------------ the cache


def test_builds_once_and_evicts_one_least_recently_used_entry_at_a_time():
    cache = DeviceCache("t", limit=3)
    cpu = torch.device("cpu")
    built = []

    def build(v):
        def f():
            built.append(v)
            return torch.tensor([v])
        return f

    first = [cache.get(k, cpu, build(k)) for k in range(3)]
    assert cache.get(0, cpu, build(0)) is first[0] and built == [0, 1, 2]  # a hit: 0 is the newest now
    cache.get(3, cpu, build(3))  # over the limit: 1, the least recently used, goes (alone)
    assert len(cache) == 3 and (1, cpu) not in cache and (0, cpu) in cache and (2, cpu) in cache
    assert cache.get(2, cpu, build(2)) is first[2] and built == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="limit must be a positive int"):
        DeviceCache("t", limit=0)


def test_a_miss_inside_a_capture_raises_naming_the_cache():
    cache = FakeCudaCache("decode_heatmaps: flip permutation")
    cache.capturing = True
    with pytest.raises(RuntimeError, match="decode_heatmaps: flip permutation: first use on cuda:0 inside a CUDA graph capture"):
        cache.get("k", CUDA0, _values(1))
    assert len(cache) == 0 and cache.uploads == []


def test_an_entry_used_in_a_capture_is_never_evicted():
    cache = FakeCudaCache(limit=2)
    kept = cache.get("graph", CUDA0, _values(0))  # built eagerly
    cache.capturing = True
    assert cache.get("graph", CUDA0, _values(0)) is kept  # a captured kernel reads it at every replay
    cache.capturing = False
    for k in range(5):
        cache.get(k, CUDA0, _values(k))
    assert ("graph", CUDA0) in cache and len(cache) == 2  # the others rotate around it
    cache.clear()
    assert ("graph", CUDA0) in cache and len(cache) == 1


def test_use_on_another_stream_waits_for_the_upload_once_per_stream():
    cache = FakeCudaCache()
    t = cache.get("k", CUDA0, _values(7))
    assert cache.uploads == [([7], "s0")] and cache.shared == []  # built on s0: nothing to order there
    cache.get("k", CUDA0, _values(7))
    assert cache.shared == []
    cache.stream = "s1"  # another thread's stream, or a branch-parallel side stream
    for _ in range(3):
        assert cache.get("k", CUDA0, _values(7)) is t
    assert cache.shared == [("event1", "s1")]  # wait + record_stream, once
    cache.stream = "s2"
    cache.get("k", CUDA0, _values(7))
    cache.stream = "s0"
    cache.get("k", CUDA0, _values(7))
    assert cache.shared == [("event1", "s1"), ("event1", "s2")] and len(cache.uploads) == 1
    cache.capturing = True
    cache.stream = "s3"  # inside a capture: no wait on an event recorded outside it
    cache.get("k", CUDA0, _values(7))
    assert len(cache.shared) == 2


def test_one_key_per_device():
    cache = FakeCudaCache()
    a = cache.get("k", torch.device("cuda", 0), _values(1))
    b = cache.get("k", torch.device("cuda", 1), _values(1))
    assert a is not b and len(cache.uploads) == 2
    assert _device_cache._normal(torch.device("cpu")) == torch.device("cpu")


# ------------------------------------------------------------------------------------ the ops' caches


def test_image_tables_are_evicted_one_at_a_time_not_wholesale():
    # the table of a call in flight must survive other calls filling the cache (it was cleared wholesale)
    crop_module._META_CACHE.clear()
    cpu = torch.device("cpu")
    mine = crop_module._image_meta(((10, 20), (30, 40)), cpu)
    assert mine.tolist() == [[0, 10, 20], [600, 30, 40]]
    for k in range(63):
        crop_module._image_meta(((k + 1, 1),), cpu)
    assert crop_module._image_meta(((10, 20), (30, 40)), cpu) is mine  # used again: now the newest
    for k in range(63, 70):  # over the limit of 64: the oldest others go, one at a time
        crop_module._image_meta(((k + 1, 1),), cpu)
    assert crop_module._image_meta(((10, 20), (30, 40)), cpu) is mine
    assert len(crop_module._META_CACHE) == 64


def test_decode_constants_are_built_once_per_device():
    cpu = torch.device("cpu")
    w = decode_module._blur_weights(11, cpu)
    assert decode_module._blur_weights(11, cpu) is w and w.dtype == torch.float32
    assert torch.equal(w, torch.tensor(decode_module.gaussian_kernel1d(11), dtype=torch.float32))
    p = decode_module._flip_perm(((1, 2), (3, 4)), 5, cpu)
    assert p.tolist() == [0, 2, 1, 4, 3] and p.dtype == torch.int64
    assert decode_module._flip_perm(((1, 2), (3, 4)), 5, cpu) is p


def test_estimator_builds_its_decode_constants_at_construction():
    from _golden import TINY_YAML

    decode_module._perm_cache.clear()
    decode_module._weights_cache.clear()
    model = hrnet_fast.pose_hrnet(TINY_YAML).eval()
    hrnet_fast.PoseEstimator(model, device="cpu", decode="dark")
    cpu = torch.device("cpu")
    pairs = decode_module._normalize_pairs(hrnet_fast.COCO_FLIP_PAIRS, 17)
    assert ((pairs, 17), cpu) in decode_module._perm_cache and (11, cpu) in decode_module._weights_cache


# ------------------------------------------------------------------------------------ on a GPU


@pytest.mark.gpu
def test_gpu_constants_built_on_one_stream_are_ready_on_another():
    decode_module._perm_cache.clear()
    dev = torch.device("cuda", torch.cuda.current_device())
    torch.manual_seed(3)
    hm = torch.rand(4, 5, 64, 48, device=dev)
    fl = torch.rand(4, 5, 64, 48, device=dev)
    pairs = ((1, 2), (3, 4))
    want = hrnet_fast.flip_merge(hm.cpu(), fl.cpu(), pairs)
    a, b = torch.cuda.Stream(), torch.cuda.Stream()
    with torch.cuda.stream(a):
        torch.cuda._sleep(50_000_000)  # keep stream a busy: its upload lands late
        decode_module._flip_perm(pairs, 5, dev)
    b.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(b):
        got = hrnet_fast.flip_merge(hm, fl, pairs)  # must wait for the upload on a
    b.synchronize()
    torch.testing.assert_close(got.cpu(), want, rtol=0, atol=0)
    entry = decode_module._perm_cache._entries[((pairs, 5), dev)]
    assert b in entry.streams


@pytest.mark.gpu
def test_gpu_capture_needs_the_constants_built_before():
    decode_module._perm_cache.clear()
    torch.manual_seed(4)
    hm = torch.rand(2, 5, 16, 12, device="cuda")
    fl = torch.rand(2, 5, 16, 12, device="cuda")
    pairs = ((1, 3),)
    graph = torch.cuda.CUDAGraph()
    with pytest.raises(RuntimeError, match="inside a CUDA graph capture"):
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            hrnet_fast.flip_merge(hm, fl, pairs)
    want = hrnet_fast.flip_merge(hm, fl, pairs)  # eager: builds the permutation
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, capture_error_mode="thread_local"):
        out = hrnet_fast.flip_merge(hm, fl, pairs)
    for k in range(70):  # other keys fill the cache past its limit: the captured entry stays
        decode_module._flip_perm(((0, 1),), k + 2, hm.device)
    graph.replay()
    torch.testing.assert_close(out, want, rtol=0, atol=0)
    dev = torch.device("cuda", torch.cuda.current_device())
    assert decode_module._perm_cache._entries[((pairs, 5), dev)].pinned

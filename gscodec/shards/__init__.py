"""Webdataset-style tar shards of `.gsi` files: reading and writing samples, manifests, work plans, verification.

* :mod:`.tar`: samples grouped by key (``000001.jpg`` + ``000001.txt``), atomic shard writing;
* :mod:`.manifest`: the JSON written next to each finished shard (keys, sizes, PSNR, failures, inputs);
* :mod:`.plan`: which output shard each input goes to and which process encodes it;
* :mod:`.verify`: checking a shard set against its manifests and its inputs.
"""

from .manifest import (FailureEntry, InputFile, Manifest, ManifestError, SampleEntry, finished, manifest_path,
                       read_manifest, write_manifest)
from .plan import PlanError, ShardTask, assign, list_key, parse_shard_spec, plan_input_list, plan_tar_shards
from .tar import (ShardError, ShardWriter, TarSample, image_member_extensions, is_tar_name, iter_samples,
                  remove_stale_temps, shard_stem, split_key)
from .verify import ShardCheck, VerifyReport, verify_shards

__all__ = [
    "FailureEntry", "InputFile", "Manifest", "ManifestError", "PlanError", "SampleEntry", "ShardCheck", "ShardError",
    "ShardTask", "ShardWriter", "TarSample", "VerifyReport", "assign", "finished", "image_member_extensions",
    "is_tar_name", "iter_samples", "list_key", "manifest_path", "parse_shard_spec", "plan_input_list",
    "plan_tar_shards", "read_manifest", "remove_stale_temps", "shard_stem", "split_key", "verify_shards",
    "write_manifest",
]

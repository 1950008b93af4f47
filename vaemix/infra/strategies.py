"""Choosing the ``tf.distribute`` strategy; call :func:`make_strategy` before any other TF op."""

from __future__ import annotations

import json
import os

import tensorflow as tf

from vaemix.errors import VaemixError


def _logical_cpus(n: int) -> list[str]:
    """Split the CPU into ``n`` logical devices so MirroredStrategy can be exercised without GPUs."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu) or []
    if len(current) < n:
        try:
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
        except RuntimeError:
            raise VaemixError(
                f"strategy.devices={n}: TensorFlow was initialised with {max(len(current), 1)} CPU device(s) "
                "before the strategy was created; start a fresh process"
            ) from None
    return [f"/cpu:{i}" for i in range(n)]


def make_strategy(kind: str, devices: int | None = None) -> tf.distribute.Strategy:
    """``default``: one device; ``mirrored``: local GPUs (or ``devices`` logical CPUs without GPUs);
    ``multi_worker``: MultiWorkerMirroredStrategy over the cluster in ``TF_CONFIG``."""
    if kind == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise VaemixError("strategy=multi_worker needs the TF_CONFIG environment variable (see README)")
        try:
            json.loads(os.environ["TF_CONFIG"])
        except json.JSONDecodeError as e:
            raise VaemixError(f"TF_CONFIG is not valid JSON ({e})") from None
        return tf.distribute.MultiWorkerMirroredStrategy()
    if kind == "mirrored":
        # Physical, not logical, devices: listing logical ones starts the runtime, after which the CPU
        # can no longer be split into logical devices.
        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            if devices is not None and devices > len(gpus):
                raise VaemixError(f"strategy.devices={devices} but this machine has {len(gpus)} GPU(s)")
            return tf.distribute.MirroredStrategy([f"/gpu:{i}" for i in range(devices or len(gpus))])
        return tf.distribute.MirroredStrategy(_logical_cpus(devices or 1))
    return tf.distribute.get_strategy()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """The worker that writes summaries, metrics and the real checkpoints."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief

"""kafka-python must checksum records with the C CRC32C (``crc32c`` package), see DESIGN.md."""

from __future__ import annotations

import types

import crc32c
from kafka.record import util

from edgemnist.kafka import require_crc32c


def test_kafka_python_uses_the_c_crc32c():
    impl = util.calc_crc32c.__defaults__[0]
    assert impl is crc32c.crc32c, "kafka.record.util falls back to pure-Python CRC32C: pip install crc32c"
    assert isinstance(impl, types.BuiltinFunctionType)
    assert util.calc_crc32c(memoryview(b"123456789")) == 0xE3069283  # the CRC-32C check value
    require_crc32c()


def test_require_crc32c_refuses_the_pure_python_fallback(monkeypatch):
    import pytest

    from edgemnist.errors import ConfigError

    def slow(memview, _crc32c=util.crc32c_py):
        return _crc32c(memview)

    monkeypatch.setattr(util, "calc_crc32c", slow)
    with pytest.raises(ConfigError, match="crc32c"):
        require_crc32c()

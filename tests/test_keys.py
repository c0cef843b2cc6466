"""Device keys (tinysplit.keys, ``tinysplit keys``): made private (mode 0600), never printed, rotated
only when asked; a key file others can read, or a broken one, is refused with a message naming it."""

from __future__ import annotations

import json
import os
import stat

import pytest

from conftest import run_cli
from tinysplit.errors import InputError
from tinysplit.keys import create_keys, load_keys


def test_create_list_and_rotate(tmp_path):
    f = tmp_path / "keys.json"
    made = create_keys(f, [7, 8])
    assert stat.S_IMODE(f.stat().st_mode) == 0o600
    keys = load_keys(f)
    assert sorted(keys) == [7, 8] and all(len(k.key) == 32 for k in keys.values())
    assert keys[7].key != keys[8].key and {k.key for k in made} == {k.key for k in keys.values()}
    with pytest.raises(InputError, match="already have a key.*--rotate"):
        create_keys(f, [8, 9])
    assert sorted(load_keys(f)) == [7, 8]  # nothing half-done: 9 was not added either
    old = keys[8].key
    create_keys(f, [8], rotate=True)
    again = load_keys(f)
    assert again[8].key != old and again[7].key == keys[7].key


def test_the_cli_never_prints_a_key(tmp_path):
    f = tmp_path / "k.json"
    r = run_cli("keys", "create", "--file", str(f), "--device", "3", "--device", "0x10")
    assert r.returncode == 0, r.stderr
    keys = load_keys(f)
    assert sorted(keys) == [3, 16]
    r2 = run_cli("keys", "list", "--file", str(f), "--json")
    assert r2.returncode == 0
    listed = json.loads(r2.stdout)["keys"]
    assert [k["device"] for k in listed] == [3, 16] and all(len(k["fingerprint"]) == 16 for k in listed)
    for k in keys.values():
        assert k.key.hex() not in r.stdout + r2.stdout and k.key.hex()[:16] not in r.stdout + r2.stdout


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620])
def test_a_key_file_others_can_read_is_refused(tmp_path, mode):
    f = tmp_path / "k.json"
    create_keys(f, [1])
    os.chmod(f, mode)
    with pytest.raises(InputError, match=r"can be read or written by others.*chmod 600"):
        load_keys(f)
    r = run_cli("keys", "list", "--file", str(f))
    assert r.returncode == 2 and "chmod 600" in r.stderr


@pytest.mark.parametrize("content, words", [
    (b"\xff\xfe", "not valid JSON"),
    (b"{", "not valid JSON"),
    (json.dumps({"format": "tinysplit-keys", "version": 1, "keys": [{"device": 1, "key": "ab"}]}).encode(),
     "keys[0].key"),
    (json.dumps({"format": "tinysplit-keys", "version": 1, "keys": [{"device": 65535, "key": "a" * 64}]}).encode(),
     "keys[0].device"),
    (json.dumps({"format": "tinysplit-keys", "version": 1, "keys": [{"device": 1, "key": "a" * 64},
                                                                    {"device": 1, "key": "b" * 64}]}).encode(),
     "two keys"),
])
def test_broken_key_files_name_the_problem(tmp_path, content, words):
    f = tmp_path / "k.json"
    f.write_bytes(content)
    os.chmod(f, 0o600)
    with pytest.raises(InputError, match=words.replace("[", r"\[").replace("]", r"\]")):
        load_keys(f)


@pytest.mark.parametrize("devices, words", [([], "at least one"), ([70000], "not 0..65534"), ([1, 1], "repeat")])
def test_bad_device_ids(tmp_path, devices, words):
    with pytest.raises(InputError, match=words):
        create_keys(tmp_path / "k.json", devices)
    assert not (tmp_path / "k.json").exists()


def test_a_missing_key_file_says_how_to_make_one(tmp_path):
    with pytest.raises(InputError, match="tinysplit keys create"):
        load_keys(tmp_path / "none.json")

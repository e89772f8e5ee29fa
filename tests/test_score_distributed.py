"""`torchrun ... -m officescore score`: photos sharded across Gloo ranks, one merged CSV/JSON from rank 0."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from scoremodels import write_checkpoint, write_scenes

from officescore.cli import main
from officescore.infer import default_batch_size


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_default_batch_is_larger_on_a_gpu() -> None:
    assert default_batch_size(torch.device("cpu")) == 2
    assert default_batch_size(torch.device("cuda", 1)) == 8


@pytest.mark.slow
def test_two_gloo_ranks_write_the_csv_one_process_writes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = write_checkpoint(tmp_path / "best.pt", {"desk": 8.0, "chair": 7.5})
    photos = tmp_path / "photos"
    write_scenes(photos, n=4)
    write_scenes(photos / "more", n=1)  # a second scene_0: annotated names must not collide across ranks
    (photos / "broken.jpg").write_bytes(b"not a photo")  # its row must stay in input order
    # fp32: byte-equal CSVs; bf16 (`auto` on CPUs with native bf16) rounds by how photos are batched
    args = ["score", str(photos), "--model", str(checkpoint), "--device", "cpu", "--json"]
    args += ["--precision", "fp32"]

    with pytest.raises(SystemExit) as one:
        main([*args, "--csv", str(tmp_path / "one.csv"), "--save-dir", str(tmp_path / "one")])
    assert one.value.code == 2  # the broken photo
    expected = json.loads(capsys.readouterr().out)

    # Each rank records how many photos it scored, then runs the real CLI entry point.
    script = tmp_path / "rank.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import json, os, sys
            from pathlib import Path
            from officescore.infer import Predictor
            from officescore.cli import main
            seen = []
            predict = Predictor.predict
            def counting(self, inputs, *args, **kwargs):
                seen.extend(str(p) for p in inputs)
                return predict(self, inputs, *args, **kwargs)
            Predictor.predict = counting
            try:
                main({[*args, "--csv", str(tmp_path / "two.csv"), "--save-dir", str(tmp_path / "two")]!r})
            except SystemExit as exc:
                code = exc.code
            Path({str(tmp_path)!r}, f"rank{{os.environ['RANK']}}.json").write_text(json.dumps(seen))
            sys.exit(0 if code in (0, None, 2) else code)
            """
        )
    )
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
    command += ["--master_addr", "127.0.0.1", "--master_port", str(_free_port()), str(script)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(tmp_path)}  # torchrun's log folders
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0, done.stderr[-3000:]

    shards = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [len(s) for s in shards] == [3, 3] and not set(shards[0]) & set(shards[1])
    assert (tmp_path / "two.csv").read_bytes() == (tmp_path / "one.csv").read_bytes()
    got = json.loads(done.stdout)  # rank 0 alone printed: one JSON document
    for document in (expected, got):
        for photo in document["photos"]:
            photo["annotated"] = photo["annotated"] and Path(photo["annotated"]).name
    assert got == expected
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(
        p.name for p in (tmp_path / "one").iterdir()
    )
    assert len(list((tmp_path / "two").iterdir())) == 5

"""Copy the published transparency-log test vectors into tests/vectors_tlog/ (data only, no code).

Usage: python scripts/import_tlog_vectors.py MERKLE_GIT MOD_GIT C2SP_GIT
where each argument is a git directory (a clone or bare mirror) of, in order,
github.com/transparency-dev/merkle, github.com/golang/mod and github.com/C2SP/C2SP.
The commits are pinned below; tests/vectors_tlog/README.md names them and the licences.
Every string copied by hand from a Go test is checked to appear verbatim in the pinned file.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

MERKLE_COMMIT = "417fb0c314750d94e53942e9f92e79b6d35915db"
MOD_COMMIT = "fe2ec04f7c3c3aa6fad97631aafcff6e49e2d1db"
C2SP_COMMIT = "5ba5ee830903e91240fc6f9f3a7a9293d49e69c9"
OUT = Path(__file__).resolve().parent.parent / "tests" / "vectors_tlog"


def git(git_dir: str, *args: str) -> str:
    return subprocess.run(["git", "--git-dir", git_dir, *args], check=True, capture_output=True, text=True).stdout


def show(git_dir: str, commit: str, path: str) -> str:
    return git(git_dir, "show", f"{commit}:{path}")


def go_function_hexes(source: str, name: str) -> list[list[str]] | list[str]:
    """The hd("...") literals of Go function `name`, nested one level per `{`...`}` group when there are groups."""
    body = source.split(f"func {name}()", 1)[1].split("\n}\n", 1)[0]
    groups = re.findall(r"\{([^{}]*)\}", body.split("return", 1)[1])
    if len(groups) > 1:
        return [re.findall(r'hd\("([0-9a-f]*)"\)', g) for g in groups]
    return re.findall(r'hd\("([0-9a-f]*)"\)', body)


def probes(git_dir: str, kind: str) -> list[dict[str, object]]:
    paths = [p for p in git(git_dir, "ls-tree", "-r", "--name-only", MERKLE_COMMIT, f"testdata/{kind}").split() if p]
    found = []
    for path in sorted(paths):
        probe = json.loads(show(git_dir, MERKLE_COMMIT, path))
        probe["file"] = path
        found.append(probe)
    return found


def checked(source: str, *strings: str) -> None:
    for s in strings:
        if s not in source:
            raise SystemExit(f"not found verbatim upstream: {s!r}")


def main(merkle: str, mod: str, c2sp: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    constants = show(merkle, MERKLE_COMMIT, "testonly/constants.go")
    reference = {
        "source": f"transparency-dev/merkle@{MERKLE_COMMIT}:testonly/constants.go",
        "leaf_inputs_hex": go_function_hexes(constants, "LeafInputs"),
        "node_hashes_hex": go_function_hexes(constants, "NodeHashes"),
        "root_hashes_hex": [go_function_hexes(constants, "EmptyRootHash")[0]]
        + go_function_hexes(constants, "RootHashes"),
    }
    write("rfc6962-tree.json", reference)
    for kind in ("inclusion", "consistency"):
        write(
            f"{kind}-probes.json",
            {"source": f"transparency-dev/merkle@{MERKLE_COMMIT}:testdata/{kind}/", "probes": probes(merkle, kind)},
        )

    note_test = show(mod, MOD_COMMIT, "sumdb/note/note_test.go")
    tlog_note_test = show(mod, MOD_COMMIT, "sumdb/tlog/note_test.go")
    peter_vkey = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
    peter_skey = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
    enoch_vkey = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
    text = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
    peter_sig = (
        "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
    )
    enoch_sig = (
        "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"
    )
    bad_vkeys = [
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",
    ]
    checked(note_test, peter_vkey, peter_skey, enoch_vkey, peter_sig[:-1], enoch_sig[:-1], *bad_vkeys)
    checked(note_test, *text.splitlines())
    tree_note = "go.sum database tree\n123456789012\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n"
    checked(tlog_note_test, tree_note.replace("\n", "\\n"), 'RecordHash([]byte("hello world"))')

    signed_note = show(c2sp, C2SP_COMMIT, "signed-note.md")
    c2sp_vkey = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
    c2sp_note = (
        "This is an example message.\n\n"
        "— example.com/foo "
        "Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
    )
    checked(signed_note, c2sp_vkey, c2sp_note)
    checkpoint_md = show(c2sp, C2SP_COMMIT, "tlog-checkpoint.md")
    c2sp_checkpoint = (
        "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n"
        "— example.com/behind-the-sofa "
        "Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
    )
    checked(checkpoint_md, c2sp_checkpoint)
    cosignature_md = show(c2sp, C2SP_COMMIT, "tlog-cosignature.md")
    cosigned = "cosignature/v1\ntime 1679315147\n" + c2sp_checkpoint.split("\n\n")[0] + "\n"
    checked(cosignature_md, "\n".join("    " + line for line in cosigned.splitlines()))
    write(
        "notes.json",
        {
            "go": {
                "source": f"golang/mod@{MOD_COMMIT}:sumdb/note/note_test.go and sumdb/tlog/note_test.go",
                "peter_vkey": peter_vkey,
                "peter_skey": peter_skey,
                "enoch_vkey": enoch_vkey,
                "text": text,
                "peter_signature_line": peter_sig,
                "enoch_signature_line": enoch_sig,
                "bad_vkeys": bad_vkeys,
                "tree_note": {
                    "text": tree_note,
                    "origin": "go.sum database tree",
                    "size": 123456789012,
                    "root_is_leaf_hash_of": "hello world",
                },
            },
            "c2sp": {
                "source": f"C2SP/C2SP@{C2SP_COMMIT}:signed-note.md and tlog-checkpoint.md",
                "vkey": c2sp_vkey,
                "note": c2sp_note,
                "checkpoint": c2sp_checkpoint,
                "cosigned_message": {
                    "source": f"C2SP/C2SP@{C2SP_COMMIT}:tlog-cosignature.md",
                    "timestamp": 1679315147,
                    "message": cosigned,
                },
            },
        },
    )

    tiles_md = show(c2sp, C2SP_COMMIT, "tlog-tiles.md")
    checked(
        tiles_md,
        "index 1234067 will be encoded as\n`x001/x234/067`",
        "a tree of size 70,000 will be represented by 273 full level 0",
    )
    write(
        "tiles.json",
        {
            "source": f"C2SP/C2SP@{C2SP_COMMIT}:tlog-tiles.md (the examples of the text)",
            "index_paths": [{"index": 1234067, "path": "x001/x234/067"}],
            "sizes": [
                {"size": 70000, "full": {"0": 273, "1": 1}, "partial": {"0": 112, "1": 17, "2": 1}},
                {"size": 256, "full": {"0": 1}, "partial": {"1": 1}},
            ],
        },
    )
    write("go-tiles.json", go_tiles(mod))


def go_tiles(mod: str) -> dict[str, object]:
    """Go's tile path encodings (tlog_test.go `tilePaths`) and NewTiles counts (tile_test.go)."""
    tlog_test = show(mod, MOD_COMMIT, "sumdb/tlog/tlog_test.go")
    tile_test = show(mod, MOD_COMMIT, "sumdb/tlog/tile_test.go")
    table = tlog_test.split("var tilePaths = ", 1)[1].split("\n}\n", 1)[0]
    index_paths, bad = [], []
    for level, index_path, fields in re.findall(
        r'\{"tile/\d+/(-?\d+|data)/([x0-9/]+?)(?:\.p/\d+)?", Tile\{([^}]*)\}\}', table
    ):
        if not fields:  # Tile{}: Go expects an error
            if level.isdigit():  # the level is fine, so the index is what is wrong
                bad.append(index_path)
        elif level.isdigit() and (case := {"index": int(fields.split(",")[2]), "path": index_path}) not in index_paths:
            index_paths.append(case)
    body = tile_test.split("func TestNewTilesForSize", 1)[1].split("\n}\n", 1)[0]
    height = int(re.search(r"NewTiles\((\d+), tt\.old, tt\.new\)", body)[1])
    cases = [{"old": int(a), "new": int(b), "want": int(c)} for a, b, c in re.findall(r"\{(\d+), (\d+), (\d+)\}", body)]
    if not index_paths or not bad or not cases:
        raise SystemExit("the Go tile tests changed shape")
    return {
        "source": f"golang/mod@{MOD_COMMIT}:sumdb/tlog/tlog_test.go (tilePaths) and sumdb/tlog/tile_test.go "
        "(TestNewTilesForSize)",
        "index_paths": index_paths,
        "bad_index_paths": bad,
        "height": height,
        "new_tiles": cases,
    }


def write(name: str, data: object) -> None:
    (OUT / name).write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", "utf-8")
    print(f"wrote {OUT / name}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    main(*sys.argv[1:])

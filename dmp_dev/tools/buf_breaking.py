"""`make lint`'s wire-compatibility check: `buf breaking` against the previous commit.

Vendors generate clients from protos/, so a change that breaks them must be seen. The check
compares the working tree with `HEAD~1` as a local git input (`.git#ref=HEAD~1`): that covers
the last commit (all CI sees on a fresh clone) and whatever is not committed yet (what a
developer is about to commit), with nothing to fetch.

The platform is pre-1.0: a breaking change is allowed when it is deliberate. Its commit records
it in `buf-breaking-allowed.txt` as the exact transition it makes, the git tree of protos/
before and after, next to its entry in the README's Changelog. An allowance covers that
transition only: once the commit is no longer the last one the check compares identical trees,
and any other edit of protos/ gives another tree, checked in full again.

    python -m dmp_dev.tools.buf_breaking [--buf PATH]          # the check (make lint)
    python -m dmp_dev.tools.buf_breaking allow "what breaks"   # record HEAD → working tree
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ALLOWED = ROOT / "buf-breaking-allowed.txt"
PROTOS = "protos"


def _git(*args: str, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(  # noqa: S603 - git with our own arguments
        ["git", *args],  # noqa: S607 - git from PATH, as make and CI find it
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def committed_tree(ref: str) -> str:
    """The git tree id of protos/ at `ref`."""
    return _git("rev-parse", f"{ref}:{PROTOS}")


def working_tree() -> str:
    """The git tree id protos/ would have if committed as it is now (a scratch index)."""
    with tempfile.TemporaryDirectory() as scratch:
        env = {**os.environ, "GIT_INDEX_FILE": str(Path(scratch) / "index")}
        _git("read-tree", "--empty", env=env)
        _git("add", "--", PROTOS, env=env)
        return _git("write-tree", f"--prefix={PROTOS}/", env=env)


def allowances() -> dict[tuple[str, str], str]:
    """(tree before, tree after) → what the deliberate breaking change is."""
    found: dict[tuple[str, str], str] = {}
    if not ALLOWED.exists():
        return found
    for line in ALLOWED.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            before, after, *what = line.split(maxsplit=2)
            found[before, after] = what[0] if what else ""
    return found


def check(buf: str, against: str) -> int:
    """0 when protos/ breaks nothing against `against`, or breaks it as recorded."""
    _git("rev-parse", "--verify", f"{against}^{{commit}}")  # a clear error if it is missing
    done = subprocess.run(  # noqa: S603 - the pinned buf of node_modules
        [buf, "breaking", "--against", f".git#ref={against}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode == 0:
        return 0
    if done.returncode != 100:  # 100: breaking changes found; anything else: buf failed
        sys.stdout.write(done.stdout + done.stderr)
        return done.returncode
    findings = len(done.stdout.splitlines())
    before, now, head = committed_tree(against), working_tree(), committed_tree("HEAD")
    allowed = allowances()
    what = allowed.get((before, now))
    if what is not None:
        print(f"buf breaking: {findings} finding(s) against {against}, a deliberate change")
        print(f"  recorded in {ALLOWED.name}: {what}")
        return 0
    if against != "HEAD" and now != head and (before, head) in allowed:
        # The last commit's break is recorded; what is not committed yet is checked on its own.
        print(f"buf breaking: {against}..HEAD is recorded as deliberate; checking against HEAD")
        return check(buf, "HEAD")
    sys.stdout.write(done.stdout + done.stderr)
    print(
        f"buf breaking: protos/ breaks clients compared with {against}. If this is deliberate"
        " (pre-1.0), add it to the README's Changelog and record it with\n"
        '  python -m dmp_dev.tools.buf_breaking allow "<what breaks>"',
    )
    return 1


def allow(what: str) -> None:
    """Record the change from HEAD's protos/ to the working tree's as deliberate."""
    line = f"{committed_tree('HEAD')} {working_tree()} {what}\n"
    with ALLOWED.open("a") as out:
        out.write(line)
    print(line, end="")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--buf", default=str(ROOT / "node_modules" / ".bin" / "buf"))
    parser.add_argument("--against", default=os.environ.get("BUF_BREAKING_AGAINST", "HEAD~1"))
    parser.add_argument("command", nargs="?", choices=["check", "allow"], default="check")
    parser.add_argument("what", nargs="?", default="")
    args = parser.parse_args()
    if args.command == "allow":
        if not args.what.strip():
            parser.error("allow needs a short description of what breaks")
        allow(args.what.strip())
        return
    raise SystemExit(check(args.buf, args.against))


if __name__ == "__main__":
    main()

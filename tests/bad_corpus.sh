#!/usr/bin/env bash
# bad_corpus.sh — builds a corpus of broken and unusual inputs in a temp dir
# and runs fruitnet-extract over it together with good images. Each case must
# end in a clear per-file error or a correct result; the process never dies
# of a signal; the rows of the good files are complete and valid; a full
# disk gives exit 2, a message naming the file, and no corrupt part.
# usage: tests/bad_corpus.sh [BUILD_DIR]      (prints "bad_corpus: N passed, N failed")
set -u
cd "$(dirname "$0")/.."
B=${1:-build}
X="$PWD/$B/fruitnet-extract"
W=${FRUITNET_WEIGHTS:-$PWD/weights/resnet50.fnw}
SAMPLE=${FRUITNET_SAMPLE:-../shared/data/fruits-360-sample}
PY=${FRUITNET_PYTHON:-$PWD/.venv/bin/python}  # the test venv's python (make venv), with Pillow
T=$(mktemp -d /tmp/fruitnet-bad-XXXXXX)
trap 'chmod -R u+rwx "$T" 2>/dev/null; umount "$T/small" "$T/ds" 2>/dev/null; chattr -i "$T/ds" 2>/dev/null; [ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
ko() { fail=$((fail + 1)); echo "FAIL $1"; }

C="$T/corpus/Bad"
G="$T/corpus/Good"
mkdir -p "$C" "$G"
# good images: two real ones when the sample exists, else generated PNGs
if [ -d "$SAMPLE/Banana" ]; then
  cp "$SAMPLE/Banana/108_100.jpg" "$G/banana.jpg"
  cp "$SAMPLE/Lemon/321_100.jpg" "$G/lemon.jpg"
  src="$G/banana.jpg"
else
  "$B/demo-images" "$T/gen" >/dev/null
  cp "$T/gen/Banana/0_100.png" "$G/banana.png"
  cp "$T/gen/Lemon/0_100.png" "$G/lemon.png"
  src="$G/banana.png"
fi

"$PY" - "$C" "$src" <<'PY'
import os, struct, sys, zlib, random
C, src = sys.argv[1], sys.argv[2]
data = open(src, "rb").read()
random.seed(2026)
def put(name, b):
    open(os.path.join(C, name), "wb").write(b)
# truncated at many offsets
for cut in (1, 2, 3, 10, 20, 100, 300, 600, len(data) // 2, len(data) - 2):
    put("trunc_%05d%s" % (cut, os.path.splitext(src)[1]), data[:cut])
# bit flips in the header region
for i in range(12):
    b = bytearray(data); pos = random.randrange(2, min(400, len(b))); b[pos] ^= 1 << random.randrange(8)
    put("flip_%02d%s" % (i, os.path.splitext(src)[1]), bytes(b))
def chunk(t, d): return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
def png(w, h, ct, bd, raw, extra=b""):
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, bd, ct, 0, 0, 0)) + extra + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
# huge declared dimensions
put("huge_60000.png", png(60000, 60000, 2, 8, b""))
put("huge_60000.jpg", bytes([0xFF,0xD8,0xFF,0xC0,0,17,8,0xEA,0x60,0xEA,0x60,3,1,0x22,0,2,0x11,1,3,0x11,1]) + b"\xff\xd9")
# decompression bomb: 20000 x 20000 grey zeros in a small file (refused by the pixel limit)
w = h = 20000
z = zlib.compressobj(9); comp = b""
row = b"\0" * (w + 1)
for _ in range(h): comp += z.compress(row)
comp += z.flush()
put("bomb_20000.png", b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) + chunk(b"IDAT", comp) + chunk(b"IEND", b""))
# valid unusual PNGs: 16-bit RGB, palette, grey, grey+alpha, RGBA
put("ok_rgb16.png", png(3, 2, 2, 16, b"".join(b"\0" + bytes(range(18)) for _ in range(2))))
put("ok_palette.png", png(4, 4, 3, 8, b"".join(b"\0" + bytes([0, 1, 2, 1]) for _ in range(4)), chunk(b"PLTE", bytes([255, 0, 0, 0, 255, 0, 0, 0, 255]))))
put("ok_grey.png", png(5, 5, 0, 8, b"".join(b"\0" + bytes([10 * i] * 5) for i in range(5))))
put("ok_greyalpha.png", png(2, 2, 4, 8, b"".join(b"\0" + bytes([100, 255, 200, 0]) for _ in range(2))))
put("ok_rgba.png", png(2, 2, 6, 8, b"".join(b"\0" + bytes([1, 2, 3, 4, 5, 6, 7, 8]) for _ in range(2))))
# empty and garbage
put("empty.jpg", b"")
put("text.png", b"hello, I am not a picture\n")
put("zeros.jpg", b"\0" * 4096)
PY

# progressive and CMYK JPEGs (Pillow, from the test venv)
if "$PY" -c 'import PIL' 2>/dev/null; then
  "$PY" - "$C" <<'PY'
import sys
from PIL import Image
C = sys.argv[1]
im = Image.new("RGB", (40, 30), (200, 120, 30))
im.save(f"{C}/ok_progressive.jpg", progressive=True, quality=90)
Image.new("CMYK", (40, 30), (10, 200, 30, 5)).save(f"{C}/cmyk.jpg", quality=90)
PY
else
  [ "${FRUITNET_REQUIRE_DATA:-}" != 1 ] || { echo "FAIL $PY has no Pillow (FRUITNET_REQUIRE_DATA=1): run make venv"; exit 1; }
  echo "note: $PY has no Pillow; progressive and CMYK cases skipped"
fi

# the hostile image cases of tests/data/image-cases (manifest.tsv: what fruitnet must do with each);
# those decoded as PIL decodes them are named ok_* and must give rows
if [ "$(basename "$B")" = build-stb ]; then stb=1; else stb=0; fi
while IFS=$'\t' read -r f w h pil expect; do
  case "$f" in hostile/*) ;; *) continue;; esac
  case "$expect" in "ok turbo"*) [ $stb = 1 ] && expect=${expect#*refused stb: } || expect=ok;; esac
  n=$(basename "$f")
  if [ "$expect" = ok ]; then cp "tests/data/image-cases/$f" "$C/ok_hostile_$n"
  else cp "tests/data/image-cases/$f" "$C/hostile_$n"; printf '%s\t%s\n' "hostile_$n" "$expect" >>"$T/hostile.expect"; fi
done <tests/data/image-cases/manifest.tsv

# file-system oddities
mkdir "$C/dir_named.jpg"
ln -s "$T/corpus" "$C/loop"                          # a symlink loop back to the root
ln -s "$C/does-not-exist.jpg" "$C/dangling.jpg"
cp "$src" "$C/unreadable.jpg"; chmod 000 "$C/unreadable.jpg"
cp "$src" "$C/$(printf 'latin1_\xe9t\xe9.jpg')"      # not UTF-8
long=$(printf 'L%.0s' $(seq 1 250)); cp "$src" "$C/$long.jpg"   # 254-byte name

# ---- run
out="$T/out/features.parquet"
# a directory given where a file is expected (through a list file)
printf '%s\n' "$C/dir_named.jpg" >"$T/list.txt"
"$X" --weights "$W" -q -o "$out" "$T/corpus" "@$T/list.txt" >"$T/stdout" 2>"$T/stderr"
rc=$?
if [ $rc -ge 128 ]; then ko "extract died of signal $((rc - 128))"; else ok "extract exited normally ($rc)"; fi
[ $rc -eq 1 ] && ok "exit status 1 (some inputs failed)" || ko "exit status $rc, expected 1"
errs="$out/_errors.tsv"
for f in empty.jpg text.png zeros.jpg huge_60000.png huge_60000.jpg bomb_20000.png dangling.jpg dir_named.jpg; do
  if grep -q "/$f	" "$errs" 2>/dev/null && grep -q "$f" "$T/stderr"; then ok "$f reported with a reason";
  else ko "$f not reported"; fi
done
nh=0; hbad=""
while IFS=$'\t' read -r n why; do
  nh=$((nh + 1))
  grep -F "/$n	" "$errs" 2>/dev/null | grep -qF "$why" || hbad="$hbad $n"
done <"$T/hostile.expect"
[ -z "$hbad" ] && ok "$nh hostile image files reported with their reason" || ko "hostile files not reported as expected:$hbad"
grep -q "loop" "$T/stderr" && ok "symlink loop reported" || ko "symlink loop not reported"
# a valid image whose name is not UTF-8 is processed: its row's path is escaped (%XX), not an error
grep -q 'latin1_' "$errs" && ko "non-UTF-8 file name reported as a failure" || ok "non-UTF-8 file name not a failure"
if [ "$(id -u)" != 0 ]; then
  grep -q "unreadable.jpg" "$errs" && ok "unreadable file reported" || ko "unreadable file not reported"
else
  echo "note: running as root, the chmod 000 file is readable (counted as good)"
fi
# every row: good files present, no bad file, 2048 finite values
PYTHONPATH=python FRUITNET_LIB="$PWD/$B/libfruitnet.so" "$PY" - "$out" "$T/corpus" "$errs" <<'PY'
import os, sys, math
import fruitnet
out, root, errs = sys.argv[1:4]
rows = list(fruitnet.read_parquet(out))
failed = {l.split("\t")[0] for l in open(errs, encoding="utf-8", errors="surrogateescape").read().splitlines()[1:]}
paths = [p for p, _, _ in rows]
bad = [p for p, _, v in rows if len(v) != 2048 or not all(map(math.isfinite, v))]
must = [os.path.join(root, "Good", f) for f in os.listdir(os.path.join(root, "Good"))]
must += [os.path.join(root, "Bad", f) for f in os.listdir(os.path.join(root, "Bad")) if f.startswith("ok_")]
missing = [m for m in must if m not in paths]
if not any(p.endswith("/Bad/latin1_%E9t%E9.jpg") for p in paths):
    missing.append("latin1_%E9t%E9.jpg (the non-UTF-8 name, escaped)")
overlap = failed & set(paths)
print(f"rows {len(rows)}, failed {len(failed)}, bad vectors {len(bad)}, missing good {missing}, in both {sorted(overlap)}")
sys.exit(0 if not bad and not missing and not overlap and len(paths) == len(set(paths)) else 1)
PY
[ $? -eq 0 ] && ok "good rows complete and valid; failures and rows disjoint" || ko "rows check"

# ---- a full disk while writing: exit 2, the file named, no corrupt part left
full="$T/small"
mkdir -p "$full"
if mount -t tmpfs -o size=40k tmpfs "$full" 2>/dev/null; then how="tmpfs of 40 KiB"; else how="ulimit -f 40"; fi
(
  trap '' XFSZ
  [ "$how" = "ulimit -f 40" ] && ulimit -f 40
  "$X" --weights "$W" -q --codec none --part-size 20 -o "$full/f.parquet" "$G" "$G" "$T/corpus/Bad" >"$T/full.out" 2>"$T/full.err"
  echo $? >"$T/full.rc"
)
frc=$(cat "$T/full.rc")
if [ "$frc" = 2 ] && grep -qiE "no space|too large|write failed|cannot" "$T/full.err"; then ok "full disk ($how): exit 2 with a clear message"; else ko "full disk ($how): exit $frc: $(head -2 "$T/full.err")"; fi
PYTHONPATH=python FRUITNET_LIB="$PWD/$B/libfruitnet.so" "$PY" - "$full/f.parquet" <<'PY'
import sys, fruitnet
try:
    files = fruitnet.dataset_files(sys.argv[1])
except fruitnet.FruitnetError:
    files = []
for f in files:            # every part on disk is complete and readable
    list(fruitnet.read_parquet(f))
print(f"{len(files)} complete part(s) on the full disk")
PY
[ $? -eq 0 ] && ok "no corrupt part on the full disk" || ko "corrupt part on the full disk"
umount "$full" 2>/dev/null

# ---- a dataset folder tampered with or damaged after the commit: readers name the file and the reason,
# a new run repairs it keeping every good row; nothing hangs (each run bounded by `timeout`)
TO=${FRUITNET_BAD_TIMEOUT:-600}
D="$T/ds"
run_x() { timeout "$TO" "$X" --weights "$W" -q "$@"; }
# ds_read DIR -> "ROWS UNIQUE_PATHS" on stdout (exit 0), or the reader's error on stdout (exit 3)
ds_read() {
  PYTHONPATH=python FRUITNET_LIB="$PWD/$B/libfruitnet.so" "$PY" - "$1" <<'PY'
import sys, fruitnet
try:
    rows = [p for p, _, v in fruitnet.read_parquet(sys.argv[1]) if len(v) == 2048]
except fruitnet.FruitnetError as e:
    print(e); sys.exit(3)
print(len(rows), len(set(rows)))
PY
}
ngood=$(ls "$G" | wc -l)
run_x --part-size 1 -o "$D" "$G" >"$T/ds.out" 2>"$T/ds.err"; drc=$?
[ $drc = 0 ] && [ "$(ds_read "$D")" = "$ngood $ngood" ] && ok "dataset of $ngood good images written and read" \
  || ko "dataset setup: exit $drc: $(head -2 "$T/ds.err")"
# expect_read WHAT PATTERN: the reader refuses the folder with PATTERN in its message
expect_read() {
  local r; r=$(ds_read "$D"); local rc=$?
  if [ $rc = 3 ] && grep -qF -- "$2" <<<"$r"; then ok "$1: reader refuses: $r"; else ko "$1: reader gave ($rc) $r"; fi
}
# repair WHAT: a new run exits 0 within the timeout and the dataset reads back whole, each good row once
repair() {
  run_x --part-size 1 -o "$D" "$G" >"$T/rep.out" 2>"$T/rep.err"; local rc=$?
  local r; r=$(ds_read "$D")
  if [ $rc = 0 ] && [ "$r" = "$ngood $ngood" ]; then ok "$1: a new run repairs it";
  else ko "$1: new run exit $rc, read: $r; $(head -2 "$T/rep.err")"; fi
}
m="$D/_manifest-s00001of00001.tsv"
# a tampered manifest: garbage part lines, a changed option, a NUL byte, no final newline
if [ -f "$m" ]; then
  "$PY" - "$m" <<'PY'
import sys
p = sys.argv[1]; t = open(p, "rb").read()
t = t.replace(b"part_size\t1", b"part_size\t999").replace(b"part\tpart-", b"part\t../../etc/passwd\t\t\t-5\tpart-")
open(p, "wb").write(t + b"state\tcomplete\n\x00\xff garbage")
PY
  repair "tampered manifest"
fi
# _SUCCESS listing a part that is missing
p0=$(ls "$D"/part-*.parquet 2>/dev/null | head -1)
if [ -n "$p0" ]; then
  mv "$p0" "$T/saved.parquet"
  expect_read "_SUCCESS lists a missing part" "$(basename "$p0"): listed in _SUCCESS but missing"
  repair "missing part"
  # an extra part not in _SUCCESS (a copy of a real one)
  cp "$p0" "$D/part-00099.parquet"
  expect_read "extra part not in _SUCCESS" "part-00099.parquet: not part of the committed dataset"
  repair "extra part"
  [ -e "$D/part-00099.parquet" ] && ko "extra part still there after the repair" || ok "extra part removed by the new run"
  # a part truncated after the commit
  truncate -s -7 "$p0"
  expect_read "part truncated after the commit" "_SUCCESS recorded"
  repair "truncated part"
  # _SUCCESS listing a part twice (hides an unlisted part)
  cp "$p0" "$D/part-00098.parquet"
  head -2 "$D/_SUCCESS" | tail -1 >>"$D/_SUCCESS"
  expect_read "_SUCCESS lists a part twice" "listed twice in _SUCCESS"
  repair "part listed twice"
fi
# a FIFO as the lock file: refused with its name (never opened in blocking mode), the FIFO left in place
rm -f "$D/_lock"; mkfifo "$D/_lock"
run_x --part-size 1 -o "$D" "$G" >"$T/fifo.out" 2>"$T/fifo.err"; frc=$?
if [ $frc = 2 ] && grep -qF "$D/_lock: not a regular file (a FIFO)" "$T/fifo.err" && [ -p "$D/_lock" ]; then
  ok "FIFO lock file refused: $(head -1 "$T/fifo.err")"
else ko "FIFO lock file: exit $frc: $(head -2 "$T/fifo.err")"; fi
[ "$(ds_read "$D")" = "$ngood $ngood" ] && ok "dataset intact after the refused run" || ko "dataset damaged by the refused run"
rm -f "$D/_lock"
# an output folder without write permission: exit 2 naming the folder, the committed dataset untouched
ro=""
if [ "$(id -u)" != 0 ]; then chmod a-w "$D" && ro="chmod a-w";
elif mount --bind "$D" "$D" 2>/dev/null; then
  if mount -o remount,ro,bind "$D" 2>/dev/null; then ro="read-only bind mount"; else umount "$D"; fi
fi
if [ -z "$ro" ] && chattr +i "$D" 2>/dev/null; then ro="chattr +i"; fi
if [ -n "$ro" ]; then
  run_x --part-size 1 -o "$D" "$G" >"$T/ro.out" 2>"$T/ro.err"; rrc=$?
  if [ $rrc = 2 ] && grep -qF "$D" "$T/ro.err" && grep -qiE "read-only|permission|not permitted" "$T/ro.err"; then
    ok "unwritable output ($ro): exit 2: $(head -1 "$T/ro.err")"; else ko "unwritable output ($ro): exit $rrc: $(head -2 "$T/ro.err")"; fi
  case "$ro" in chmod*) chmod u+w "$D";; read-only*) umount "$D";; chattr*) chattr -i "$D";; esac
  [ "$(ds_read "$D")" = "$ngood $ngood" ] && ok "dataset intact after the unwritable run" || ko "dataset damaged by the unwritable run"
else
  echo "note: running as root without mount or chattr: the unwritable-output case is not run"
fi
# the dataset folder replaced by a file: exit 2 naming it, the file untouched
rm -rf "$D"; echo "not a folder" >"$D"
run_x -o "$D" "$G" >"$T/file.out" 2>"$T/file.err"; rc2=$?
if [ $rc2 = 2 ] && grep -qF "$D" "$T/file.err" && [ "$(cat "$D")" = "not a folder" ]; then
  ok "output folder replaced by a file: exit 2: $(head -1 "$T/file.err")"; else ko "output is a file: exit $rc2: $(head -2 "$T/file.err")"; fi
rm -f "$D"
# a @list with CRLF lines, a comment, a 1 MB line and a NUL byte: the good lines give rows, the others errors
"$PY" - "$T/hostile.list" "$G" <<'PY'
import os, sys
out, g = sys.argv[1], sys.argv[2]
good = sorted(os.path.join(g, f) for f in os.listdir(g))
t = b"# comment\r\n" + good[0].encode() + b"\r\n\r\n" + b"y" * (1 << 20) + b"\n" + b"nul\x00.jpg\n"
t += b"\n".join(p.encode() for p in good[1:])            # no final newline
open(out, "wb").write(t)
PY
run_x -o "$T/list.parquet" --single-file "@$T/hostile.list" >"$T/list.out" 2>"$T/list.err"; lrc=$?
le="$T/list.parquet.errors.tsv"
[ -f "$le" ] || le=$(ls "$T"/list*errors* 2>/dev/null | head -1)
if [ $lrc = 1 ] && grep -q "File name too long" "$le" 2>/dev/null && grep -q "holds a NUL byte" "$le" 2>/dev/null \
   && grep -q "hostile.list" "$T/list.err"; then ok "hostile @list: exit 1, the 1 MB line and the NUL line reported"
else ko "hostile @list: exit $lrc: $(head -c 300 "$T/list.err")"; fi
r=$(ds_read "$T/list.parquet"); [ "$r" = "$ngood $ngood" ] && ok "hostile @list: every good line gives its row" || ko "hostile @list rows: $r"

echo "bad_corpus: $pass passed, $fail failed"
[ $fail -eq 0 ]

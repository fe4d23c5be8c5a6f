#!/usr/bin/python3
"""
make.py — the image decoding cases of tests/test_image.c, with PIL's verdicts.

Regenerate (Debian's python3-pil, Pillow 9.4.0: the PIL of the golden data, and
libjpeg-turbo-progs for cjpeg):

    /usr/bin/python3 tests/data/image-cases/make.py

Writes, in this folder:
  png/<mode>.png    every PNG mode (grey 1/2/4/8/16, grey+tRNS, grey+alpha 8/16,
                    RGB 8/16, RGB+tRNS, RGBA 8/16, palette 1/2/4/8, palette+tRNS,
                    palette shorter than its indices, palette without PLTE), each
                    also Adam7-interlaced (<mode>_i.png), all five filter types
                    (row y uses filter y % 5), image data split over several IDATs;
  hostile/*         corrupt, truncated, unsupported and over-limit files;
  <file>.rgb        for every file PIL decodes: PIL's Image.open(f).convert('RGB')
                    pixels, raw, row-major;
  manifest.tsv      file, width, height, PIL's verdict ("ok" or "refused: <error>"),
                    and what fruitnet must do: "ok" (pixels equal the .rgb), or
                    "refused" with a substring of fruitnet's error message.
The files are deterministic (fixed seeds): regenerating gives the same bytes.
"""
import io
import os
import random
import struct
import subprocess
import sys
import zlib

import PIL
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
assert PIL.__version__ == "9.4.0", "run with Debian's /usr/bin/python3 (Pillow 9.4.0), not " + PIL.__version__
rows = []


def chunk(t, d, crc=None):
    c = zlib.crc32(t + d) if crc is None else crc
    return struct.pack(">I", len(d)) + t + d + struct.pack(">I", c & 0xFFFFFFFF)


def filt(ftype, cur, prev, bpp):
    out = bytearray(len(cur))
    for i in range(len(cur)):
        a = cur[i - bpp] if i >= bpp else 0
        b = prev[i]
        c = prev[i - bpp] if i >= bpp else 0
        if ftype == 0:
            p = 0
        elif ftype == 1:
            p = a
        elif ftype == 2:
            p = b
        elif ftype == 3:
            p = (a + b) >> 1
        else:
            pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
            p = a if pa <= pb and pa <= pc else b if pb <= pc else c
        out[i] = (cur[i] - p) & 255
    return bytes(out)


CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def pack_row(samples, depth):
    """samples: list of ints, one per sample; packs big-endian at `depth` bits"""
    if depth == 16:
        return b"".join(struct.pack(">H", s) for s in samples)
    if depth == 8:
        return bytes(samples)
    out, acc, n = bytearray(), 0, 0
    for s in samples:
        acc = acc << depth | s
        n += depth
        if n == 8:
            out.append(acc)
            acc, n = 0, 0
    if n:
        out.append(acc << (8 - n))
    return bytes(out)


def encode(w, h, ct, depth, pix, interlace=False, extra=b"", nidat=3, empty_idat=True):
    """pix[y][x] = tuple of samples. Returns a PNG whose rows cycle through the 5 filters."""
    ch = CHANNELS[ct]
    bpp = max(1, ch * depth // 8)
    passes = ADAM7 if interlace else [(0, 0, 1, 1)]
    raw = bytearray()
    for x0, y0, dx, dy in passes:
        xs, ys = list(range(x0, w, dx)), list(range(y0, h, dy))
        if not xs or not ys:
            continue
        prev = bytes(len(pack_row([0] * ch * len(xs), depth)))
        for k, y in enumerate(ys):
            cur = pack_row([s for x in xs for s in pix[y][x]], depth)
            ft = k % 5
            raw += bytes([ft]) + filt(ft, cur, prev, bpp)
            prev = cur
    z = zlib.compress(bytes(raw), 9)
    parts = [z[i * len(z) // nidat:(i + 1) * len(z) // nidat] for i in range(nidat)]
    idat = b"".join(chunk(b"IDAT", p) for p in parts[:1] + [b""] * empty_idat + parts[1:])  # an empty IDAT too
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ct, 0, 0, 1 if interlace else 0))
            + extra + idat + chunk(b"IEND", b""))


def pil(data):
    """PIL's verdict and pixels."""
    try:
        im = Image.open(io.BytesIO(data))
        rgb = im.convert("RGB")
        return "ok", rgb.size, rgb.tobytes()
    except Exception as e:  # noqa: BLE001 - any PIL error is a refusal
        msg = str(e).replace("\t", " ").replace("\n", " ")
        if "BytesIO" in msg:
            msg = "cannot identify image file"
        return "refused: %s: %s" % (type(e).__name__, msg), None, None


def put(rel, data, expect, run_pil=True):
    path = os.path.join(HERE, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    verdict, size, px = pil(data) if run_pil else ("not run (too slow in PIL)", None, None)
    if px is not None:
        with open(path + ".rgb", "wb") as f:
            f.write(px)
    elif os.path.exists(path + ".rgb"):
        os.remove(path + ".rgb")
    w, h = size if size else (0, 0)
    rows.append((rel, w, h, verdict, expect))
    return verdict


def main():
    rnd = random.Random(2026)
    W, H = 13, 7   # odd sizes: partial bytes for 1/2/4-bit rows
    WI, HI = 13, 11  # interlaced: all seven passes non-empty

    def img(w, h, gen):
        return [[gen(x, y) for x in range(w)] for y in range(h)]

    def modes(w, h):
        r = random.Random(w * 1000 + h)
        g16 = lambda x, y: (r.choice([r.randrange(256), r.randrange(65536), 255, 256, 65535, 0, 300]),)
        plte16 = bytes(r.randrange(256) for _ in range(16 * 3))
        plte256 = bytes(r.randrange(256) for _ in range(256 * 3))
        return [
            ("g1", 0, 1, img(w, h, lambda x, y: (r.randrange(2),)), b""),
            ("g2", 0, 2, img(w, h, lambda x, y: (r.randrange(4),)), b""),
            ("g4", 0, 4, img(w, h, lambda x, y: (r.randrange(16),)), b""),
            ("g8", 0, 8, img(w, h, lambda x, y: (r.randrange(256),)), b""),
            ("g16", 0, 16, img(w, h, g16), b""),
            ("g8_trns", 0, 8, img(w, h, lambda x, y: (r.randrange(256),)), chunk(b"tRNS", b"\0\x20")),
            ("g16_trns", 0, 16, img(w, h, g16), chunk(b"tRNS", b"\x01\x00")),
            ("ga8", 4, 8, img(w, h, lambda x, y: (r.randrange(256), r.randrange(256))), b""),
            ("ga16", 4, 16, img(w, h, lambda x, y: (r.randrange(65536), r.randrange(65536))), b""),
            ("rgb8", 2, 8, img(w, h, lambda x, y: tuple(r.randrange(256) for _ in range(3))), b""),
            ("rgb16", 2, 16, img(w, h, lambda x, y: tuple(r.randrange(65536) for _ in range(3))), b""),
            ("rgb8_trns", 2, 8, img(w, h, lambda x, y: tuple(r.randrange(256) for _ in range(3))),
             chunk(b"tRNS", b"\0\1\0\2\0\3")),
            ("rgba8", 6, 8, img(w, h, lambda x, y: tuple(r.randrange(256) for _ in range(4))), b""),
            ("rgba16", 6, 16, img(w, h, lambda x, y: tuple(r.randrange(65536) for _ in range(4))), b""),
            ("p1", 3, 1, img(w, h, lambda x, y: (r.randrange(2),)), chunk(b"PLTE", plte16[:6])),
            ("p2", 3, 2, img(w, h, lambda x, y: (r.randrange(4),)), chunk(b"PLTE", plte16[:12])),
            ("p4", 3, 4, img(w, h, lambda x, y: (r.randrange(16),)), chunk(b"PLTE", plte16)),
            ("p8", 3, 8, img(w, h, lambda x, y: (r.randrange(256),)), chunk(b"PLTE", plte256)),
            ("p8_trns", 3, 8, img(w, h, lambda x, y: (r.randrange(256),)),
             chunk(b"PLTE", plte256) + chunk(b"tRNS", bytes(r.randrange(256) for _ in range(200)))),
            ("p4_short_plte", 3, 4, img(w, h, lambda x, y: (r.randrange(16),)), chunk(b"PLTE", plte16[:5 * 3 + 2])),
            ("p8_no_plte", 3, 8, img(w, h, lambda x, y: (r.randrange(256),)), b""),
        ]

    for name, ct, depth, pix, extra in modes(W, H):
        assert put("png/%s.png" % name, encode(W, H, ct, depth, pix, False, extra), "ok") == "ok", name
    for name, ct, depth, pix, extra in modes(WI, HI):
        assert put("png/%s_i.png" % name, encode(WI, HI, ct, depth, pix, True, extra), "ok") == "ok", name
    for w, h in ((1, 1), (2, 3), (5, 1), (1, 6)):  # interlaced with empty passes
        pix = img(w, h, lambda x, y: tuple(rnd.randrange(256) for _ in range(3)))
        put("png/rgb8_i_%dx%d.png" % (w, h), encode(w, h, 2, 8, pix, True), "ok")
        pix = img(w, h, lambda x, y: (rnd.randrange(2),))
        put("png/p1_i_%dx%d.png" % (w, h), encode(w, h, 3, 1, pix, True, chunk(b"PLTE", b"\x10\x20\x30\xa0\xb0\xc0")),
            "ok")

    # ---- hostile PNGs, from a good RGB file with one IDAT
    pix = img(W, H, lambda x, y: tuple(rnd.randrange(256) for _ in range(3)))
    good = encode(W, H, 2, 8, pix, False, b"", nidat=1, empty_idat=False)
    i_idat = good.index(b"IDAT") - 4
    n_idat = struct.unpack(">I", good[i_idat:i_idat + 4])[0]
    zdata = good[i_idat + 8:i_idat + 8 + n_idat]
    head, tail = good[:i_idat], good[i_idat + 12 + n_idat:]

    def with_idat(z, crc=None):
        return head + chunk(b"IDAT", z, crc) + tail

    b = bytearray(good)
    b[29] ^= 0x01  # IHDR CRC
    put("hostile/png_bad_crc_ihdr.png", bytes(b), "bad CRC in chunk IHDR")
    put("hostile/png_bad_crc_idat.png", with_idat(zdata, zlib.crc32(b"IDAT" + zdata) ^ 0x100),
        "bad CRC in chunk IDAT")  # PIL does not check it: stricter
    b = bytearray(zdata)
    b[len(b) // 2] ^= 0x08
    put("hostile/png_bitflip_idat.png", head + chunk(b"IDAT", bytes(b), zlib.crc32(b"IDAT" + zdata)) + tail,
        "bad CRC in chunk IDAT")  # the bit flip as a reader meets it: CRC of the original data
    flips = 0
    for pos in range(2, len(zdata) - 4):  # bit flips inside the zlib data, CRC recomputed: PIL refuses these
        b = bytearray(zdata)
        b[pos] ^= 1 << (pos % 8)
        if pil(with_idat(bytes(b)))[0] != "ok" and flips < 3:
            put("hostile/png_bitflip_zlib_%03d.png" % pos, with_idat(bytes(b)), "corrupt PNG image data")
            flips += 1
    b = bytearray(zdata)
    b[-1] ^= 0x01
    put("hostile/png_bad_adler.png", with_idat(bytes(b)), "Adler-32 checksum mismatch")
    for cut in (5, 20, 31, 37, i_idat + 8 + n_idat // 3, i_idat + 8 + n_idat - 6, i_idat + 8 + n_idat + 2):
        put("hostile/png_cut_%04d.png" % cut, good[:cut], "truncated PNG")
    put("hostile/png_no_iend.png", good[:len(good) - 12], "ok")  # PIL decodes it; the pixels are complete
    put("hostile/png_cut_in_iend.png", good[:len(good) - 5], "ok")
    put("hostile/png_no_idat.png", head + tail, "without image data")
    raw = zlib.decompress(zdata)
    put("hostile/png_short_data.png", with_idat(zlib.compress(raw[:-10], 9)), "truncated PNG")
    b = bytearray(raw)
    b[(1 + W * 3) * 2] = 5
    put("hostile/png_filter_5.png", with_idat(zlib.compress(bytes(b), 9)), "filter type 5")
    bad_mode = good[:8] + chunk(b"IHDR", struct.pack(">IIBBBBB", W, H, 4, 2, 0, 0, 0)) + good[33:]
    put("hostile/png_mode_rgb4.png", bad_mode, "unknown PNG mode")
    put("hostile/png_short_phys.png", head + chunk(b"pHYs", b"\0\0\1") + good[i_idat:], "truncated pHYs chunk")
    put("hostile/png_plte_257.png", head + chunk(b"PLTE", bytes(257 * 3)) + good[i_idat:], "ok")  # RGB: PLTE unused
    p8 = encode(W, H, 3, 8, img(W, H, lambda x, y: (0,)), extra=chunk(b"PLTE", bytes(257 * 3)))
    put("hostile/png_p8_plte_257.png", p8, "invalid PNG palette size")
    put("hostile/png_chunk_cut_after_idat.png", good[:len(good) - 12] + chunk(b"tEXt", b"a\0bcdefgh")[:-5],
        "truncated PNG (chunk tEXt")
    put("hostile/png_zero_width.png", good[:8] + chunk(b"IHDR", struct.pack(">IIBBBBB", 0, H, 8, 2, 0, 0, 0)) + good[33:],
        "exceeds the limits")
    # a 16384 x 4096 grey image declared by 60 bytes of image data: refused before the pixels are allocated
    bomb = (good[:8] + chunk(b"IHDR", struct.pack(">IIBBBBB", 16384, 4096, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 50000, 9)) + chunk(b"IEND", b""))
    put("hostile/png_bomb_16384x4096.png", bomb, "cannot hold")

    # ---- JPEGs
    src = Image.new("RGB", (40, 30))
    src.putdata([(x * 6, y * 8, (x * y) % 256) for y in range(30) for x in range(40)])
    ppm = os.path.join(HERE, "tmp.ppm")
    src.save(ppm)
    try:
        arith = subprocess.run(["cjpeg", "-arithmetic", ppm], check=True, capture_output=True).stdout
        base = subprocess.run(["cjpeg", ppm], check=True, capture_output=True).stdout
    finally:
        os.remove(ppm)
    put("hostile/jpeg_arithmetic.jpg", arith, "ok turbo; refused stb: arithmetic-coded JPEG: not supported")
    sof = base.index(b"\xff\xc0")
    b = bytearray(base)
    b[sof + 4] = 12
    put("hostile/jpeg_12bit.jpg", bytes(b), "12-bit JPEG: not supported")
    b = bytearray(base)
    b[sof + 1] = 0xC3
    put("hostile/jpeg_lossless.jpg", bytes(b), "lossless JPEG: not supported")
    put("hostile/jpeg_ffffd8.jpg", b"\xff" + base, "unknown image format")  # the fuzz finding's start
    # 1000 scans of an 8192 x 8192 grey progressive JPEG in ~11 KB (empty scans: libjpeg reads zeros)
    q = b"\xff\xdb" + struct.pack(">H", 67) + b"\0" + bytes([1] * 64)
    sof2 = b"\xff\xc2" + struct.pack(">HBHHB", 11, 8, 8192, 8192, 1) + b"\x01\x11\x00"
    dht = (b"\xff\xc4" + struct.pack(">H", 2 + 17 + 1) + b"\x00" + bytes([1] + [0] * 15) + b"\x00"
           + b"\xff\xc4" + struct.pack(">H", 2 + 17 + 1) + b"\x10" + bytes([1] + [0] * 15) + b"\x00")
    dc = b"\xff\xda" + struct.pack(">HB", 8, 1) + b"\x01\x00" + bytes([0, 0, 0])
    ac = b"\xff\xda" + struct.pack(">HB", 8, 1) + b"\x01\x00" + bytes([1, 63, 0])
    put("hostile/jpeg_1000_scans.jpg", b"\xff\xd8" + q + sof2 + dht + dc + ac * 999 + b"\xff\xd9",
        "progressive JPEG with more than 256 scans: refused", run_pil=False)
    # other formats renamed .jpg (PIL reads them all; fruitnet names them)
    for fmt, ext, what in (("GIF", "gif", "GIF image"), ("WEBP", "webp", "WebP image"), ("BMP", "bmp", "BMP image"),
                           ("TIFF", "tiff", "TIFF image")):
        bio = io.BytesIO()
        src.save(bio, fmt)
        put("hostile/%s_renamed.jpg" % ext, bio.getvalue(), what + ": not supported")

    with open(os.path.join(HERE, "manifest.tsv"), "w") as f:
        f.write("# file\twidth\theight\tPIL %s\tfruitnet\n" % PIL.__version__)
        for r in rows:
            f.write("%s\t%d\t%d\t%s\t%s\n" % r)
    print("make.py: %d cases in %s" % (len(rows), HERE), file=sys.stderr)


if __name__ == "__main__":
    main()

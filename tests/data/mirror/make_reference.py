"""Pillow's mirrored model inputs for test_image's test_mirror_equals_pil (run with /usr/bin/python3, Pillow 9.4.0,
the golden data's PIL):  /usr/bin/python3 tests/data/mirror/make_reference.py

Each NAME.rgb224.u8.gz: the 224x224x3 RGB bytes of
Image.open(f).convert('RGB').transpose(Image.FLIP_LEFT_RIGHT).resize((224, 224), Image.BICUBIC)."""
import gzip
import os

from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
MINI = os.path.join(HERE, "..", "fruits-360-mini", "images")
for name, rel in (("banana_108", "Banana/108_100.jpg"), ("kiwi_39", "Kiwi/39_100.jpg")):
    im = Image.open(os.path.join(MINI, rel)).convert("RGB")
    out = im.transpose(Image.FLIP_LEFT_RIGHT).resize((224, 224), Image.BICUBIC)
    with gzip.GzipFile(os.path.join(HERE, name + ".rgb224.u8.gz"), "wb", mtime=0) as f:
        f.write(out.tobytes())
    print(name, Image.__version__ if hasattr(Image, "__version__") else "", out.size)

"""A torch ``Dataset`` that reads ``.ncz`` files: decode straight to ``C x H x W`` tensors.

    python examples/torch_dataloader.py [FOLDER_OF_NCZ] [--batch-size N] [--workers K]

Each item is decoded with ``output="torch"`` (float32 in ``[0, 1]``); a ``DataLoader``
batches them (and decodes in parallel with ``--workers``). The codec is created lazily in
each worker process, never pickled. Without a folder, a few crops of scikit-image's bundled
astronaut photo are encoded into a temporary one first.
"""
import argparse
import tempfile
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

import codec
from bitstream import ContainerReader, StreamKind


class NczDataset(Dataset):
    """The images of a folder of ``.ncz`` files (image or lossless streams) as tensors."""

    def __init__(self, folder):
        self.files = sorted(Path(folder).glob("*.ncz"))
        self._codecs = {}

    def __len__(self):
        return len(self.files)

    def _codec(self, data):
        kind = ContainerReader(data).header.kind  # the header alone says which codec
        if kind not in self._codecs:  # one codec per kind and per worker process
            lossless = kind == StreamKind.LOSSLESS
            self._codecs[kind] = codec.LosslessCodec() if lossless else codec.ImageCodec()
        return self._codecs[kind]

    def __getitem__(self, i):
        data = self.files[i].read_bytes()
        return self._codec(data).decode(data, output="torch")[0]  # C x H x W


def make_sample_folder(folder, n=4, size=64):
    """Encode ``n`` crops of a bundled photo into ``folder`` (one of them losslessly)."""
    from skimage.data import astronaut

    photo = astronaut()
    crops = torch.stack([torch.from_numpy(photo[i * 96:i * 96 + size, 150:150 + size].copy())
                         .permute(2, 0, 1).float() / 255 for i in range(n)])
    files = codec.ImageCodec().encode_batch(crops[1:], quality=3)  # N x C x H x W in
    files.insert(0, codec.LosslessCodec().encode(crops[0]))
    for i, data in enumerate(files):
        Path(folder, f"crop{i}.ncz").write_bytes(data)
    return crops


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", nargs="?")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--workers", type=int, default=0)
    args = p.parse_args(argv)
    folder = args.folder or tempfile.mkdtemp(prefix="ncz-set-")
    originals = None if args.folder else make_sample_folder(folder)

    loader = DataLoader(NczDataset(folder), batch_size=args.batch_size,
                        num_workers=args.workers)
    batches = list(loader)
    for b in batches:
        print(f"batch {tuple(b.shape)} {b.dtype} range [{b.min():.2f}, {b.max():.2f}]")
    if originals is not None:
        decoded = torch.cat(batches)
        mse = ((decoded - originals) ** 2).mean(dim=(1, 2, 3))
        print("PSNR per image:", [round(float(v), 2) for v in 10 * torch.log10(1 / mse)])
        assert torch.equal(decoded[0], originals[0]), "the lossless item must be exact"


if __name__ == "__main__":
    main()

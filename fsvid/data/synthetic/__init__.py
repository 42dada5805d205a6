"""A synthetic few-shot action dataset whose classes are defined by motion.

Every clip is drawn procedurally: one or two objects (discs, squares, arrows, L shapes, ...)
on a cluttered, noisy background. What makes a clip belong to its class is *how things move*:
left to right, up, along a circle, growing (approach), fading in, passing behind another
object, pushing it, ... Appearance (shape, colour, size, speed, start position, background
colour and texture, noise) is drawn afresh for every video, so a single frame says little
about the class.

Most classes come in **time-reversed pairs**, as in Something-Something v2: ``recede`` is
*literally* ``approach`` played backwards (a clip of ``approach`` is rendered and its frame
order reversed). A clip and its reversal contain exactly the same frames, so a method that
ignores frame order (a mean of frame features, for instance) cannot tell the twins apart,
while a temporal model can. The members of a pair always land in the same split, so test
tasks can contain both twins.

The dataset is written like the real benchmarks this package reads::

    ROOT/videos/<class>/<video_id>.mp4            (format="mp4", H.264, yuv420p)
    ROOT/frames/<class>/<video_id>/000001.jpg      (format="frames")
    ROOT/splits/trainlist01.txt, vallist01.txt, testlist01.txt   ("class/video_id" lines)
    ROOT/dataset.json                              (config, classes, videos)

>>> clip = render_clip("approach", np.random.default_rng(0))       # (24, 80, 80, 3) uint8
>>> root = generate_synthetic_dataset("/tmp/fsvid_synthetic")       # about 1,150 short mp4s

Generation is deterministic: video ``v`` of class ``c`` is drawn from its own generator
seeded by ``(seed, index of c in SYNTHETIC_CLASSES, v)``, so the files do not depend on the
number of worker processes nor on which other classes are selected.

Modules: :mod:`~fsvid.data.synthetic.canvas` (shapes, sprites, backgrounds, compositing),
:mod:`~fsvid.data.synthetic.motions` (the class table and each class's motion),
:mod:`~fsvid.data.synthetic.config` (:class:`SyntheticConfig`, which classes it selects),
:mod:`~fsvid.data.synthetic.render` (one clip) and :mod:`~fsvid.data.synthetic.dataset`
(writing the files).
"""

from fsvid.data.synthetic.config import GENERATOR_VERSION, SyntheticConfig, list_synthetic_classes, select_classes
from fsvid.data.synthetic.dataset import generate_synthetic_dataset
from fsvid.data.synthetic.motions import SYNTHETIC_CLASSES, SyntheticClass
from fsvid.data.synthetic.render import render_clip, video_rng

__all__ = [
    "SyntheticClass",
    "SyntheticConfig",
    "SYNTHETIC_CLASSES",
    "GENERATOR_VERSION",
    "list_synthetic_classes",
    "select_classes",
    "video_rng",
    "render_clip",
    "generate_synthetic_dataset",
]

# Same stage composition as data/char_diffusion/config/complex.py (one copy of the stage lists):
# inference replacement picks positions with the char_diffusion stages, then corrupts them its own way.
import os

_shared = os.path.join(os.path.dirname(__file__), '..', '..', 'char_diffusion', 'config', 'complex.py')
with open(_shared, encoding='utf-8') as _f:
    exec(compile(_f.read(), _shared, 'exec'))

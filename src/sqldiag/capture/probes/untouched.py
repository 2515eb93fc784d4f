"""Reading a program's objects without running any of its code.

A census walks module globals and the attributes of what they hold. Asking an object
anything in the ordinary way may run the program's code: `getattr(module, "__dict__")`
makes importlib's LazyLoader load a lazy module, `isinstance(x, T)` asks a proxy for its
`__class__` (werkzeug's LocalProxy outside a request raises; Django's lazy settings
configure themselves), and a class may define `__dict__` as a property. These read
through the interpreter's own descriptors and the collector instead.
"""

from __future__ import annotations

import gc
import types
import weakref

# the member of ModuleType that holds a module's dict, read without its __getattribute__
_MODULE_DICT = vars(types.ModuleType)["__dict__"]
# a class's MRO and own attributes, whatever its metaclass defines
_MRO, _CLASS_DICT = vars(type)["__mro__"], vars(type)["__dict__"]


def module_namespace(module: object) -> dict | None:
    """A module's dict (None for anything in sys.modules that is not a module)."""
    if not issubclass(type(module), types.ModuleType):
        return None
    namespace = _MODULE_DICT.__get__(module)
    return namespace if type(namespace) is dict else None


def class_namespace(kind: type) -> dict | None:
    """A class's own dict, as the collector reaches it (not through its metaclass)."""
    return next((part for part in gc.get_referents(kind) if type(part) is dict), None)


def instance_dict(value: object) -> dict | None:
    """An object's attributes when its class keeps them the interpreter's way (its
    __dict__ the standard descriptor, not a property of the program's); else None."""
    kind = type(value)
    try:
        descriptor = _DESCRIPTORS[kind]
    except KeyError:
        descriptor = _DESCRIPTORS[kind] = _dict_descriptor(kind)
    except TypeError:  # a class that takes no weak reference
        descriptor = _dict_descriptor(kind)
    if descriptor is None:
        return None
    attributes = descriptor.__get__(value)
    return attributes if type(attributes) is dict else None


def defined(kind: type, name: str) -> object | None:
    """What the first class along `kind`'s MRO defines as `name` itself (a descriptor
    as it is, not bound), or None: read from the classes' own dicts."""
    for klass in _MRO.__get__(kind):
        own = _CLASS_DICT.__get__(klass).get(name)
        if own is not None:
            return own
    return None


def _dict_descriptor(kind: type) -> types.GetSetDescriptorType | None:
    """The standard __dict__ descriptor the class's instances use, or None (no __dict__,
    or one of the program's own making)."""
    descriptor = defined(kind, "__dict__")
    return descriptor if type(descriptor) is types.GetSetDescriptorType else None


# per class, its instances' __dict__ descriptor (or None); a class that is freed leaves
_DESCRIPTORS: weakref.WeakKeyDictionary[type, types.GetSetDescriptorType | None] = \
    weakref.WeakKeyDictionary()

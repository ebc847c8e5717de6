"""Explicit SIMD vectors in Numba kernels.

LLVM vectorizes a loop over a contiguous array by itself, but not a register-blocked sum of
outer products: there the accumulators must stay in vector registers across a loop over
another dimension (the batch), which no auto-vectorizer arranges. These intrinsics let a
kernel hold such accumulators as LLVM vectors, one AVX2 register wide
(:data:`VECTOR_BYTES`: 8 float32 or 4 float64 lanes):

* :func:`load` and :func:`store`: ``lanes`` consecutive elements of a 1-d array from
  ``start``;
* :func:`splat`: a scalar in every lane;
* :func:`fma`: ``a * b + c`` per lane, rounded once (``llvm.fma``, IEEE fused
  multiply-add), so a lane's arithmetic is the same as the scalar ``fma``'s.

On hardware with narrower registers LLVM splits each vector into several, with the same
results. ``load``/``store`` read ``lanes`` elements with unit stride after ``start``, unchecked:
the caller guarantees they exist and are contiguous.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.core.errors import TypingError
from numba.extending import intrinsic, models, register_model

VECTOR_BYTES = 32  # one AVX2 register


def lanes_of(dtype: types.Float) -> int:
    """Elements of ``dtype`` in one vector."""
    return VECTOR_BYTES * 8 // dtype.bitwidth


class Vector(types.Type):
    """``lanes`` elements of the float type ``dtype`` in one SIMD register."""

    def __init__(self, dtype: types.Float):
        self.dtype, self.lanes = dtype, lanes_of(dtype)
        super().__init__(name=f"Vector({dtype}x{self.lanes})")


@register_model(Vector)
class _VectorModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        element = dmm.lookup(fe_type.dtype).get_value_type()
        super().__init__(dmm, fe_type, ir.VectorType(element, fe_type.lanes))


def _vector_pointer(context, builder, array_type, array, start, vector_type):
    """Pointer to ``array[start]`` as a pointer to a vector (unaligned accesses)."""
    array_struct = context.make_array(array_type)(context, builder, array)
    element = cgutils.get_item_pointer(context, builder, array_type, array_struct, [start])
    return builder.bitcast(element, context.get_value_type(vector_type).as_pointer())


def _check_float_array(array) -> None:
    if not (isinstance(array, types.Array) and array.ndim == 1
            and isinstance(array.dtype, types.Float)):
        raise TypingError(f"a 1-d float array is needed, got {array}")


@intrinsic
def load(typingctx, array, start):
    """``array[start:start + lanes]`` as a vector."""
    _check_float_array(array)
    vector = Vector(array.dtype)

    def codegen(context, builder, signature, args):
        pointer = _vector_pointer(context, builder, signature.args[0], args[0], args[1],
                                  vector)
        return builder.load(pointer, align=1)

    return vector(array, start), codegen


@intrinsic
def store(typingctx, array, start, value):
    """``array[start:start + lanes] = value``."""
    _check_float_array(array)
    if value != Vector(array.dtype):
        raise TypingError(f"a {Vector(array.dtype)} is needed, got {value}")

    def codegen(context, builder, signature, args):
        pointer = _vector_pointer(context, builder, signature.args[0], args[0], args[1],
                                  signature.args[2])
        builder.store(args[2], pointer, align=1)
        return context.get_dummy_value()

    return types.none(array, start, value), codegen


@intrinsic
def splat(typingctx, value):
    """``value`` in every lane."""
    if not isinstance(value, types.Float):
        raise TypingError(f"a float scalar is needed, got {value}")
    vector = Vector(value)

    def codegen(context, builder, signature, args):
        vector_type = context.get_value_type(vector)
        first = builder.insert_element(ir.Constant(vector_type, ir.Undefined), args[0],
                                       ir.Constant(ir.IntType(32), 0))
        zeros = ir.Constant(ir.VectorType(ir.IntType(32), vector.lanes), [0] * vector.lanes)
        return builder.shuffle_vector(first, ir.Constant(vector_type, ir.Undefined), zeros)

    return vector(value), codegen


@intrinsic
def fma(typingctx, a, b, c):
    """``a * b + c`` in every lane, rounded once."""
    if not (isinstance(c, Vector) and a == c and b == c):
        raise TypingError(f"three vectors of one type are needed, got {a}, {b}, {c}")

    def codegen(context, builder, signature, args):
        vector_type = args[0].type
        bits = 32 if isinstance(vector_type.element, ir.FloatType) else 64
        name = f"llvm.fma.v{vector_type.count}f{bits}"
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vector_type, [vector_type] * 3), name)
        return builder.call(function, args)

    return c(a, b, c), codegen

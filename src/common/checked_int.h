// Checked integer arithmetic for sizes, counts and ids read from files: every integer that comes from a GGUF,
// state file, safetensors header or JSON config goes through these before it sizes an allocation or indexes
// an array, so a hostile value is one clear error instead of a wrap-around.
#pragma once

#include <concepts>
#include <optional>
#include <utility>

#include "common/error.h"

namespace dendro {

// a + b and a * b, or nullopt when the result does not fit T.
template <std::integral T>
[[nodiscard]] constexpr std::optional<T> try_add(T a, T b) {
    T r;
    if (__builtin_add_overflow(a, b, &r)) return std::nullopt;
    return r;
}

template <std::integral T>
[[nodiscard]] constexpr std::optional<T> try_mul(T a, T b) {
    T r;
    if (__builtin_mul_overflow(a, b, &r)) return std::nullopt;
    return r;
}

// a + b and a * b, throwing dendro::Error("<context...>: ... overflows") when the result does not fit T.
template <std::integral T, typename... Context>
T checked_add(T a, T b, Context&&... context) {
    const std::optional<T> r = try_add(a, b);
    if (!r) fail(std::forward<Context>(context)..., ": ", a, " + ", b, " overflows");
    return *r;
}

template <std::integral T, typename... Context>
T checked_mul(T a, T b, Context&&... context) {
    const std::optional<T> r = try_mul(a, b);
    if (!r) fail(std::forward<Context>(context)..., ": ", a, " * ", b, " overflows");
    return *r;
}

// Whether lo <= value <= hi, compared as mathematical integers whatever the signedness of each side.
template <std::integral V, std::integral B>
[[nodiscard]] constexpr bool in_closed_range(V value, B lo, B hi) {
    return std::cmp_greater_equal(value, lo) && std::cmp_less_equal(value, hi);
}

// An index read from a file: 0 <= value < count, compared without computing value + 1.
template <std::integral V, std::integral C>
[[nodiscard]] constexpr bool is_index_below(V value, C count) {
    return std::cmp_greater_equal(value, 0) && std::cmp_less(value, count);
}

}  // namespace dendro

// The ggml type table: names, block geometry and row sizes, numbered exactly as ggml numbers them.
#include "format/ggml_types.h"

#include <array>
#include <limits>

#include "common/error.h"
#include "format/ggml_quant_blocks.h"

namespace dendro {
namespace {

// Block geometry shared by the k-quants and the i-quants (ggml's QK_K).
constexpr int64_t kSuperBlockSize = kKQuantBlockSize;

struct TypeEntry {
    uint32_t id;
    GgmlTypeTraits traits;
};

// Every type id ggml defines, with ggml's block size (elements) and type size (bytes per block). Ids that ggml
// has removed (4, 5, 31-33, 36-38) are absent, so files using them are rejected like any unknown id.
constexpr std::array kTypeTable{
    TypeEntry{0, {"f32", 1, 4, true}},
    TypeEntry{1, {"f16", 1, 2, true}},
    TypeEntry{2, {"q4_0", kLegacyQuantBlockSize, sizeof(BlockQ4_0), true}},
    TypeEntry{3, {"q4_1", kLegacyQuantBlockSize, sizeof(BlockQ4_1), true}},
    TypeEntry{6, {"q5_0", kLegacyQuantBlockSize, sizeof(BlockQ5_0), true}},
    TypeEntry{7, {"q5_1", kLegacyQuantBlockSize, sizeof(BlockQ5_1), true}},
    TypeEntry{8, {"q8_0", kQ8_0BlockSize, sizeof(BlockQ8_0), true}},
    TypeEntry{9, {"q8_1", 32, 36, false}},
    TypeEntry{10, {"q2_K", kSuperBlockSize, sizeof(BlockQ2_K), true}},
    TypeEntry{11, {"q3_K", kSuperBlockSize, sizeof(BlockQ3_K), true}},
    TypeEntry{12, {"q4_K", kSuperBlockSize, sizeof(BlockQ4_K), true}},
    TypeEntry{13, {"q5_K", kSuperBlockSize, sizeof(BlockQ5_K), true}},
    TypeEntry{14, {"q6_K", kSuperBlockSize, sizeof(BlockQ6_K), true}},
    TypeEntry{15, {"q8_K", kSuperBlockSize, 292, false}},
    TypeEntry{16, {"iq2_xxs", kSuperBlockSize, 66, false}},
    TypeEntry{17, {"iq2_xs", kSuperBlockSize, 74, false}},
    TypeEntry{18, {"iq3_xxs", kSuperBlockSize, 98, false}},
    TypeEntry{19, {"iq1_s", kSuperBlockSize, 50, false}},
    TypeEntry{20, {"iq4_nl", kLegacyQuantBlockSize, sizeof(BlockIQ4_NL), true}},
    TypeEntry{21, {"iq3_s", kSuperBlockSize, 110, false}},
    TypeEntry{22, {"iq2_s", kSuperBlockSize, 82, false}},
    TypeEntry{23, {"iq4_xs", kSuperBlockSize, 136, false}},
    TypeEntry{24, {"i8", 1, 1, false}},
    TypeEntry{25, {"i16", 1, 2, false}},
    TypeEntry{26, {"i32", 1, 4, false}},
    TypeEntry{27, {"i64", 1, 8, false}},
    TypeEntry{28, {"f64", 1, 8, false}},
    TypeEntry{29, {"iq1_m", kSuperBlockSize, 56, false}},
    TypeEntry{30, {"bf16", 1, 2, true}},
    TypeEntry{34, {"tq1_0", kSuperBlockSize, 54, false}},
    TypeEntry{35, {"tq2_0", kSuperBlockSize, 66, false}},
    TypeEntry{39, {"mxfp4", 32, 17, false}},
    TypeEntry{40, {"nvfp4", 64, 36, false}},
    TypeEntry{41, {"q1_0", 128, 18, false}},
    TypeEntry{42, {"q2_0", 64, 18, false}},
};

}  // namespace

std::optional<GgmlTypeTraits> ggml_type_traits(uint32_t raw_type) {
    for (const TypeEntry& entry : kTypeTable) {
        if (entry.id == raw_type) return entry.traits;
    }
    return std::nullopt;
}

static GgmlTypeTraits known_traits(GgmlType type) {
    const auto traits = ggml_type_traits(static_cast<uint32_t>(type));
    if (!traits) fail("unknown ggml type id ", static_cast<uint32_t>(type));
    return *traits;
}

std::string supported_ggml_type_names() {
    std::string names;
    for (const TypeEntry& entry : kTypeTable) {
        if (entry.traits.supported) names += concat(names.empty() ? "" : ", ", entry.traits.name);
    }
    return names;
}

std::string ggml_type_name(GgmlType type) {
    const auto traits = ggml_type_traits(static_cast<uint32_t>(type));
    return traits ? traits->name : concat("type#", static_cast<uint32_t>(type));
}

size_t ggml_row_size(GgmlType type, int64_t n) {
    const GgmlTypeTraits traits = known_traits(type);
    if (n < 0 || n % traits.block_size != 0) {
        fail("row of ", n, " elements is not a multiple of the ", traits.name, " block size ", traits.block_size);
    }
    const uint64_t blocks = static_cast<uint64_t>(n / traits.block_size);
    if (blocks > std::numeric_limits<size_t>::max() / traits.type_size) {
        fail("row of ", n, " ", traits.name, " elements is too large to address");
    }
    return static_cast<size_t>(blocks) * traits.type_size;
}

}  // namespace dendro

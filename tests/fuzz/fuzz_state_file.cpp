// State-file bytes -> read_state_file_header / read_state_file and the prompt-cache lookup that restores
// them (PromptCacheFile::longest_prefix). The input is read twice: as it is, and with its trailing XXH3-64
// checksum recomputed, so that mutations get past the checksum into the body. A file that reads back must
// be found by a lookup of its own tokens, and writing the snapshot again must give the same bytes.
#include <xxhash.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "fuzz_support.h"
#include "cache/prompt_cache_file.h"
#include "cache/state_file.h"
#include "state_snapshot_fixture.h"
#include "temp_dir.h"

namespace {

std::string with_fixed_checksum(std::string_view bytes) {
    std::string fixed(bytes);
    if (fixed.size() < dendro::kStateFileHeaderBytes + dendro::kStateFileChecksumBytes) return fixed;
    const size_t body = fixed.size() - dendro::kStateFileChecksumBytes;
    const uint64_t checksum = XXH3_64bits(fixed.data(), body);
    std::memcpy(fixed.data() + body, &checksum, sizeof checksum);
    return fixed;
}

// A model the state would fit (for Mamba-2, the group count its conv width implies).
dendro::ModelHparams hparams_of(const dendro::StateFileHeader& h) {
    const dendro::StateShape& shape = h.shape;
    dendro::ModelHparams hp;
    hp.arch = shape.arch;
    hp.n_vocab = h.n_vocab;
    hp.n_layer = shape.n_layer;
    hp.d_conv = shape.d_conv;
    hp.d_inner = shape.d_inner;
    hp.d_state = shape.d_state;
    if (shape.arch == dendro::Architecture::Mamba2) hp.n_group = (shape.conv_channels - shape.d_inner) / (2 * shape.d_state);
    return hp;
}

void read_and_restore(const dendro::fuzz::MemoryFile& input, std::string_view bytes) {
    const dendro::StateFileHeader header = dendro::read_state_file_header(input.path());
    const dendro::StateSnapshot snapshot = dendro::read_state_file(input.path(), header.model);

    std::string warnings;
    const auto warn = [&](const std::string& message) { warnings += message; };
    dendro::PromptCacheFile cache(input.path(), header.model, hparams_of(header), warn);
    std::vector<int32_t> prompt = snapshot.tokens;
    prompt.push_back(0);
    const std::optional<dendro::StateSnapshot> restored = cache.longest_prefix(prompt);
    dendro::fuzz::require(restored.has_value() && warnings.empty(), "a readable state file is not restored");
    dendro::fuzz::require(restored->tokens == snapshot.tokens, "the restored prefix differs from the file's");

    static dendro::test::TempDir dir;
    const std::string copy = dir.file("rewritten.state");
    dendro::write_state_file(copy, header.model, snapshot);
    if (header.version == dendro::kStateFileVersion) {
        const std::vector<uint8_t> written = dendro::test::read_file(copy);
        dendro::fuzz::require(std::string_view(reinterpret_cast<const char*>(written.data()), written.size()) == bytes,
                              "writing a state that was read gives other bytes");
    } else {  // an older version is rewritten in the current one, holding the same state
        dendro::fuzz::require(dendro::test::same_bits(dendro::read_state_file(copy, header.model), snapshot),
                              "a state rewritten in the current version reads back differently");
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static dendro::fuzz::MemoryFile input("fuzz-state");
    const std::string_view raw = dendro::fuzz::as_text(data, size);
    input.write(raw);
    dendro::fuzz::reject_with_dendro_error([&] { read_and_restore(input, raw); });

    const std::string fixed = with_fixed_checksum(raw);
    if (fixed != raw) {
        input.write(fixed);
        dendro::fuzz::reject_with_dendro_error([&] { read_and_restore(input, fixed); });
    }
    return 0;
}

// config.json text -> parse_hf_json (with its Infinity/NaN rewriting) and parse_hf_mamba_config; what is
// accepted must describe a model of positive sizes.
#include <cstddef>
#include <cstdint>

#include "fuzz_support.h"
#include "hf_config.h"
#include "hf_json.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    dendro::fuzz::reject_with_dendro_error([&] {
        const nlohmann::json json = dendro::parse_hf_json(dendro::fuzz::as_text(data, size), "config.json");
        const dendro::HfMambaConfig config = dendro::parse_hf_mamba_config(json, "config.json");
        dendro::fuzz::require(config.vocab_size > 0 && config.hidden_size > 0 && config.n_layer > 0 &&
                                  config.intermediate_size > 0 && config.state_size > 0 &&
                                  config.conv_kernel > 0 && config.time_step_rank > 0,
                              "an accepted config.json has a size that is not positive");
    });
    return 0;
}

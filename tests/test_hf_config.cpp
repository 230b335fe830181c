// config.json of HF Mamba checkpoints: defaults and aliases as transformers / llama.cpp read them, Falcon-Mamba
// detection, refusal of other architectures, and JSON with Python's Infinity/NaN literals.
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "common/error.h"
#include "hf_config.h"
#include "hf_json.h"
#include "temp_dir.h"

namespace dendro {
namespace {

HfMambaConfig parse(const std::string& text) { return parse_hf_mamba_config(parse_hf_json(text, "config.json"), "config.json"); }

std::string error_of(const std::string& text) {
    try {
        parse(text);
    } catch (const Error& e) {
        return e.what();
    }
    return "(no error)";
}

TEST(HfJson, QuotesNonfiniteLiteralsOutsideStrings) {
    EXPECT_EQ(quote_nonfinite_literals(R"({"a": Infinity, "b": -Infinity, "c": [NaN, 1]})"),
              R"({"a": "Infinity", "b": "-Infinity", "c": ["NaN", 1]})");
    // Inside strings (escaped quotes included) and as parts of longer words they stay as they are.
    const std::string untouched = R"({"Infinity": "NaN \" Infinity", "x": "InfinityX"})";
    EXPECT_EQ(quote_nonfinite_literals(untouched), untouched);
}

TEST(HfJson, ParsesConfigWithNonfiniteValues) {
    const nlohmann::json json = parse_hf_json(R"({"time_step_floor": Infinity, "m": -Infinity, "n": NaN})", "c");
    EXPECT_EQ(json.at("time_step_floor"), "Infinity");
    EXPECT_EQ(json.at("m"), "-Infinity");
    EXPECT_EQ(json.at("n"), "NaN");
}

TEST(HfJson, NamesTheSourceOfBadJson) {
    try {
        parse_hf_json("{\"a\": ", "dir/config.json");
        FAIL() << "no error";
    } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("dir/config.json: not valid JSON"), std::string::npos) << e.what();
    }
}

TEST(HfConfig, MambaWithTransformersDefaults) {
    const HfMambaConfig c = parse(R"({"architectures": ["MambaForCausalLM"], "model_type": "mamba",
        "vocab_size": 50280, "hidden_size": 768, "num_hidden_layers": 24})");
    EXPECT_EQ(c.architecture, kHfMambaArchitecture);
    EXPECT_FALSE(c.dt_b_c_rms);
    EXPECT_EQ(c.vocab_size, 50280);
    EXPECT_EQ(c.n_layer, 24);
    EXPECT_EQ(c.intermediate_size, 2 * 768);
    EXPECT_EQ(c.state_size, 16);
    EXPECT_EQ(c.conv_kernel, 4);
    EXPECT_EQ(c.time_step_rank, 48);  // ceil(768 / 16)
    EXPECT_DOUBLE_EQ(c.layer_norm_epsilon, 1e-5);
    EXPECT_TRUE(c.tie_word_embeddings);
    EXPECT_FALSE(c.use_bias);
    EXPECT_TRUE(c.use_conv_bias);
}

TEST(HfConfig, ExplicitValuesAndAutoRank) {
    const HfMambaConfig c = parse(R"({"architectures": ["MambaForCausalLM"], "vocab_size": 500,
        "hidden_size": 40, "num_hidden_layers": 2, "expand": 2, "intermediate_size": 120, "state_size": 4,
        "conv_kernel": 3, "time_step_rank": "auto", "layer_norm_epsilon": 1e-6, "tie_word_embeddings": false,
        "use_bias": true, "use_conv_bias": false, "hidden_act": "silu", "time_step_floor": Infinity})");
    EXPECT_EQ(c.intermediate_size, 120);  // trusted over expand * hidden_size
    EXPECT_EQ(c.time_step_rank, 3);       // ceil(40 / 16)
    EXPECT_EQ(c.state_size, 4);
    EXPECT_EQ(c.conv_kernel, 3);
    EXPECT_DOUBLE_EQ(c.layer_norm_epsilon, 1e-6);
    EXPECT_FALSE(c.tie_word_embeddings);
    EXPECT_TRUE(c.use_bias);
    EXPECT_FALSE(c.use_conv_bias);
}

TEST(HfConfig, MambaSsmAliases) {
    const HfMambaConfig c = parse(R"({"model_type": "mamba", "vocab_size": 64, "d_model": 32, "n_layer": 3,
        "d_inner": 96, "d_state": 8, "d_conv": 2, "dt_rank": 5, "rms_norm_eps": 1e-4})");
    EXPECT_EQ(c.hidden_size, 32);
    EXPECT_EQ(c.n_layer, 3);
    EXPECT_EQ(c.intermediate_size, 96);
    EXPECT_EQ(c.state_size, 8);
    EXPECT_EQ(c.conv_kernel, 2);
    EXPECT_EQ(c.time_step_rank, 5);
    EXPECT_DOUBLE_EQ(c.layer_norm_epsilon, 1e-4);
}

TEST(HfConfig, FalconMambaByArchitectureOrModelType) {
    const std::string dims = R"("vocab_size": 64, "hidden_size": 32, "num_hidden_layers": 1)";
    const HfMambaConfig by_arch =
        parse(R"({"architectures": ["FalconMambaForCausalLM"], "model_type": "mamba", )" + dims + "}");
    EXPECT_EQ(by_arch.architecture, kHfFalconMambaArchitecture);
    EXPECT_TRUE(by_arch.dt_b_c_rms);
    EXPECT_DOUBLE_EQ(by_arch.mixer_rms_eps, 1e-6);  // FalconMambaConfig's default
    const HfMambaConfig by_type = parse(R"({"model_type": "falcon_mamba", "mixer_rms_eps": 1e-3, )" + dims + "}");
    EXPECT_EQ(by_type.architecture, kHfFalconMambaArchitecture);
    EXPECT_TRUE(by_type.dt_b_c_rms);
    EXPECT_DOUBLE_EQ(by_type.mixer_rms_eps, 1e-3);
}

TEST(HfConfig, RefusesOtherArchitecturesNamingTheSupportedOnes) {
    const std::string err = error_of(R"({"architectures": ["JambaForCausalLM"], "vocab_size": 8})");
    EXPECT_NE(err.find("unsupported architecture 'JambaForCausalLM'"), std::string::npos) << err;
    EXPECT_NE(err.find("MambaForCausalLM, FalconMambaForCausalLM, Mamba2ForCausalLM"), std::string::npos) << err;
    // A Mamba-2 config is not read as a Mamba-1 one.
    EXPECT_NE(error_of(R"({"architectures": ["Mamba2ForCausalLM"], "vocab_size": 8})").find("is a Mamba-2 checkpoint"),
              std::string::npos);
    const std::string by_type = error_of(R"({"model_type": "llama", "vocab_size": 8})");
    EXPECT_NE(by_type.find("unsupported model_type 'llama'"), std::string::npos) << by_type;
    EXPECT_NE(by_type.find("FalconMambaForCausalLM"), std::string::npos) << by_type;
}

// Mamba2Config's defaults for the keys a config.json leaves out, and the family by architectures or model_type.
TEST(HfConfig, Mamba2DefaultsAndFamily) {
    const nlohmann::json json = parse_hf_json(
        R"({"model_type": "mamba2", "vocab_size": 64, "hidden_size": 4096, "num_hidden_layers": 1})", "c");
    EXPECT_TRUE(is_hf_mamba2_config(json));
    const HfMamba2Config c = parse_hf_mamba2_config(json, "c");
    EXPECT_EQ(c.intermediate_size, 8192);  // expand 2
    EXPECT_EQ(c.num_heads, 128);
    EXPECT_EQ(c.head_dim, 64);
    EXPECT_EQ(c.n_groups, 8);
    EXPECT_EQ(c.state_size, 128);
    EXPECT_EQ(c.conv_kernel, 4);
    EXPECT_EQ(c.chunk_size, 256);
    EXPECT_DOUBLE_EQ(c.layer_norm_epsilon, 1e-5);
    EXPECT_FALSE(c.tie_word_embeddings);  // Mamba2Config's default, unlike MambaConfig's
    EXPECT_FALSE(c.use_bias);
    EXPECT_TRUE(c.use_conv_bias);
    EXPECT_FALSE(c.time_step_limited());
    EXPECT_EQ(c.conv_dim(), 8192 + 2 * 8 * 128);
    EXPECT_EQ(c.in_proj_rows(), 2 * 8192 + 2 * 8 * 128 + 128);
    EXPECT_TRUE(is_hf_mamba2_config(parse_hf_json(R"({"architectures": ["Mamba2ForCausalLM"]})", "c")));
    // Anything else (Mamba-1, mamba_ssm's config without a class, nonsense) is left to the Mamba-1 readers.
    for (const char* other : {R"({"architectures": ["MambaForCausalLM"], "model_type": "mamba2"})",
                              R"({"d_model": 768, "ssm_cfg": {"layer": "Mamba2"}})", R"({"architectures": 3})", "[1]"}) {
        EXPECT_FALSE(is_hf_mamba2_config(parse_hf_json(other, "c"))) << other;
    }
}

TEST(HfConfig, RefusesMissingOrInvalidValues) {
    const std::string head = R"({"architectures": ["MambaForCausalLM"], )";
    EXPECT_NE(error_of(head + R"("hidden_size": 8, "num_hidden_layers": 1})").find("missing key 'vocab_size'"),
              std::string::npos);
    EXPECT_NE(error_of(head + R"("vocab_size": 8, "hidden_size": 0, "num_hidden_layers": 1})").find("out of range"),
              std::string::npos);
    EXPECT_NE(error_of(head + R"("vocab_size": 8, "hidden_size": 8.5, "num_hidden_layers": 1})")
                  .find("'hidden_size' must be an integer"),
              std::string::npos);
    EXPECT_NE(error_of(head + R"("vocab_size": 8, "hidden_size": 8, "num_hidden_layers": 1,
        "layer_norm_epsilon": NaN})").find("'layer_norm_epsilon' must be a number, got \"NaN\""),
              std::string::npos);
    EXPECT_NE(error_of(head + R"("vocab_size": 8, "hidden_size": 8, "num_hidden_layers": 1, "hidden_act": "gelu"})")
                  .find("hidden_act 'gelu'"),
              std::string::npos);
    EXPECT_NE(error_of(head + R"("vocab_size": 8, "hidden_size": 8, "num_hidden_layers": 1, "use_bias": 1})")
                  .find("'use_bias' must be true or false"),
              std::string::npos);
    // Integers above INT64_MAX were reported wrapped to negative numbers.
    const std::string huge = error_of(head + R"("vocab_size": 18446744073709551615, "hidden_size": 8,
        "num_hidden_layers": 1})");
    EXPECT_NE(huge.find("'vocab_size' = 18446744073709551615 is out of range"), std::string::npos) << huge;
    EXPECT_NE(error_of(R"([1])").find("not a JSON object"), std::string::npos);
}

// expand * hidden_size was computed unchecked: it could overflow int64 and was never range-checked.
TEST(HfConfig, ExpandTimesHiddenSizeIsChecked) {
    const std::string head = R"({"architectures": ["MambaForCausalLM"], "vocab_size": 8, "num_hidden_layers": 1, )";
    const std::string overflow = error_of(head + R"("hidden_size": 4294967295, "expand": 4294967295})");
    EXPECT_NE(overflow.find("config.json"), std::string::npos) << overflow;
    EXPECT_NE(overflow.find("expand"), std::string::npos) << overflow;
    const std::string wraps = error_of(head + R"("hidden_size": 16, "expand": 4611686018427387904})");
    EXPECT_NE(wraps.find("'expand' 4611686018427387904 * hidden_size 16 overflows"), std::string::npos) << wraps;
    const std::string too_large = error_of(head + R"("hidden_size": 4, "expand": 2147483648})");
    EXPECT_NE(too_large.find("intermediate_size"), std::string::npos) << too_large;
    EXPECT_NE(too_large.find("8589934592"), std::string::npos) << too_large;
}

// A fractional expand: intermediate_size wins when present; without it, expand * hidden_size must be whole.
TEST(HfConfig, FractionalExpand) {
    const std::string head = R"({"architectures": ["MambaForCausalLM"], "vocab_size": 8, "num_hidden_layers": 1, )";
    EXPECT_EQ(parse(head + R"("hidden_size": 16, "expand": 1.5, "intermediate_size": 40})").intermediate_size, 40);
    EXPECT_EQ(parse(head + R"("hidden_size": 16, "expand": 1.5})").intermediate_size, 24);
    EXPECT_EQ(parse(head + R"("hidden_size": 16, "expand": 2.0})").intermediate_size, 32);
    const std::string not_whole = error_of(head + R"("hidden_size": 7, "expand": 1.5})");
    EXPECT_NE(not_whole.find("config.json"), std::string::npos) << not_whole;
    EXPECT_NE(not_whole.find("'expand'"), std::string::npos) << not_whole;
    EXPECT_NE(not_whole.find("intermediate_size"), std::string::npos) << not_whole;
    for (const char* bad : {"0", "-1.5", "0.0", "\"2\""}) {
        const std::string message = error_of(head + R"("hidden_size": 16, "expand": )" + bad + "}");
        EXPECT_NE(message.find("'expand'"), std::string::npos) << bad << ": " << message;
    }
}

TEST(HfConfig, ReadsConfigFileFromDirectory) {
    const test::TempDir dir;
    EXPECT_THROW(read_hf_mamba_config(dir.path()), Error);
    std::ofstream(dir.file("config.json"))
        << R"({"architectures": ["MambaForCausalLM"], "vocab_size": 8, "hidden_size": 16, "num_hidden_layers": 1})";
    EXPECT_EQ(read_hf_mamba_config(dir.path()).hidden_size, 16);
}

}  // namespace
}  // namespace dendro

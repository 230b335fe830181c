// Regenerates the seed corpora in tests/fuzz/corpus/ (see tests/README.md): small copies of committed
// fixtures, plus the files no fixture is small enough for (a tiny random model, state files, safetensors
// files), made with the library's own writers.
//   build-sanitize/fuzz/make_fuzz_seeds tests/fuzz/corpus
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "common/error.h"
#include "fuzz_support.h"
#include "random_model_file.h"
#include "safetensors_builder.h"
#include "cache/state_file.h"
#include "state_snapshot_fixture.h"
#include "tokenizer_gguf.h"
#include "format/mapped_file.h"
#include "torch_zip.h"

namespace fs = std::filesystem;
using namespace dendro;

namespace {

// The smallest shapes a model file can have, so that its seed stays near a kilobyte.
ModelHparams seed_model_hparams() {
    ModelHparams hp;
    hp.n_vocab = 8;
    hp.d_model = 4;
    hp.n_layer = 1;
    hp.d_conv = 2;
    hp.d_inner = 4;
    hp.d_state = 2;
    hp.dt_rank = 1;
    return hp;
}

// Embedding rows for the SentencePiece vocabulary seed: its pieces, with a few padding tokens after them.
constexpr int64_t kSpmSeedVocab = 1024;

std::string text_of(const std::string& path) { return test::read_text(path); }

void write_text(const fs::path& path, std::string_view text) {
    test::write_file(path.string(), {reinterpret_cast<const uint8_t*>(text.data()), text.size()});
}

void copy_fixture(const std::string& relative, const fs::path& to) {
    fs::copy_file(test::test_data_path(relative), to, fs::copy_options::overwrite_existing);
}

void gguf_model_seeds(const fs::path& dir) {
    write_random_mamba_gguf((dir / "tiny-f32.gguf").string(), seed_model_hparams(), GgmlType::F32, 1, true);
    write_random_mamba_gguf((dir / "tiny-f16-untied.gguf").string(), seed_model_hparams(), GgmlType::F16, 2, false);
    // A model with a vocabulary, so that one input reaches both the model and the tokenizer.
    ModelHparams with_vocab = seed_model_hparams();
    with_vocab.n_vocab = test::tiny_hparams_byte_vocab().n_vocab;
    write_random_mamba_gguf((dir / "tiny-f16-byte-vocab.gguf").string(), with_vocab, GgmlType::F16, 3, true,
                            test::byte_tokenizer_options());
    ModelHparams mamba2 = seed_model_hparams();
    mamba2.arch = Architecture::Mamba2;
    mamba2.n_head = 2;
    mamba2.head_dim = 2;
    mamba2.n_group = 2;
    mamba2.time_step_max = 0.5f;
    write_random_mamba_gguf((dir / "tiny-mamba2-f32.gguf").string(), mamba2, GgmlType::F32, 4, false);
    copy_fixture("gguf/gguf_py_written.gguf", dir / "gguf_py_written.gguf");
    test::write_vocab_gguf((dir / "vocab-spm-shakespeare.gguf").string(),
                           test::test_data_path("hf/tokenizers/spm-shakespeare"), kSpmSeedVocab);
}

void state_file_seeds(const fs::path& dir) {
    const ModelHparams hp = test::tiny_state_hparams();
    const ModelFingerprint model{0x0123456789abcdef, 0xfedcba9876543210};
    for (const size_t n_tokens : {1, 5}) {
        const auto tokens = test::random_tokens(n_tokens, hp.n_vocab, n_tokens);
        write_state_file((dir / ("tiny-" + std::to_string(n_tokens) + "-tokens.state")).string(), model,
                         test::random_snapshot(hp, tokens, n_tokens));
    }
    const ModelHparams mamba2 = test::tiny_mamba2_state_hparams();
    write_state_file((dir / "tiny-mamba2-3-tokens.state").string(), model,
                     test::random_snapshot(mamba2, test::random_tokens(3, mamba2.n_vocab, 3), 3));
}

void safetensors_seeds(const fs::path& dir) {
    test::SafetensorsBuilder two;
    two.add_f32("backbone.embeddings.weight", {2, 3}, {1, 2, 3, 4, 5, 6}).add_f32("backbone.norm_f.weight", {3}, {1, 1, 1});
    two.header()["__metadata__"] = {{"format", "pt"}};
    const std::vector<uint8_t> half_bytes = {0x00, 0x3c, 0x00, 0x40};
    test::SafetensorsBuilder mixed;
    mixed.add("a.f16", "F16", {2}, half_bytes).add("b.bf16", "BF16", {1, 2}, half_bytes).add("c.scalar", "F32", {}, std::vector<uint8_t>(4));
    for (const auto& [name, builder] : {std::pair{"two-f32.safetensors", &two}, std::pair{"mixed.safetensors", &mixed}}) {
        const std::vector<uint8_t> bytes = builder->bytes();
        test::write_file((dir / name).string(), bytes);
    }
}

// The small torch.save fixtures (a contiguous state dict, views into a shared storage, a non-contiguous one).
constexpr const char* kTorchSeedFixtures[] = {"views", "noncontiguous"};

void torch_checkpoint_seeds(const fs::path& dir) {
    for (const char* fixture : kTorchSeedFixtures) {
        copy_fixture(std::string("torch/") + fixture + ".bin", dir / (std::string(fixture) + ".bin"));
    }
}

// Their data.pkl records, as the unpickler receives them.
void torch_pickle_seeds(const fs::path& dir) {
    for (const char* fixture : kTorchSeedFixtures) {
        const auto archive = TorchZipArchive::open(
            std::make_unique<MappedFile>(test::test_data_path(std::string("torch/") + fixture + ".bin")));
        for (const auto& [name, bytes] : archive->records()) {
            if (!name.ends_with("/data.pkl")) continue;
            test::write_file((dir / (std::string(fixture) + ".pkl")).string(), std::vector<uint8_t>(bytes.begin(), bytes.end()));
        }
    }
}

void hf_config_seeds(const fs::path& dir) {
    for (const char* fixture : {"mamba_tied_bpe", "falcon_mamba_bpe", "mamba_f16_spm"}) {
        copy_fixture(std::string("hf/") + fixture + "/config.json", dir / (std::string(fixture) + ".json"));
    }
}

void hf_tokenizer_seeds(const fs::path& dir) {
    const std::string bpe = test::test_data_path("hf/tokenizers/bpe-shakespeare/");
    const std::string sep(fuzz::kPartSeparator);
    write_text(dir / "bpe-shakespeare", text_of(bpe + "tokenizer.json") + sep + text_of(bpe + "tokenizer_config.json"));
    const std::string tied = test::test_data_path("hf/mamba_tied_bpe/");
    write_text(dir / "mamba-tied-bpe-with-configs",
               text_of(tied + "tokenizer.json") + sep + text_of(tied + "tokenizer_config.json") + sep +
                   text_of(tied + "config.json") + sep + text_of(tied + "generation_config.json"));
}

void spm_model_proto_seeds(const fs::path& dir) {
    copy_fixture("hf/tokenizers/spm-shakespeare/tokenizer.model", dir / "spm-shakespeare.model");
}

void tokenizer_roundtrip_seeds(const fs::path& dir) {
    for (const char* sample : {"hard_sample.txt", "normalization_sample.txt", "special_sample.txt"}) {
        copy_fixture(std::string("tokenizer_fixtures/") + sample, dir / sample);
    }
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: make_fuzz_seeds CORPUS_DIR (tests/fuzz/corpus)\n");
        return 2;
    }
    const fs::path root = argv[1];
    const std::pair<const char*, void (*)(const fs::path&)> targets[] = {
        {"fuzz_gguf_model", gguf_model_seeds},           {"fuzz_state_file", state_file_seeds},
        {"fuzz_safetensors", safetensors_seeds},         {"fuzz_hf_config", hf_config_seeds},
        {"fuzz_hf_tokenizer", hf_tokenizer_seeds},       {"fuzz_spm_model_proto", spm_model_proto_seeds},
        {"fuzz_tokenizer_roundtrip", tokenizer_roundtrip_seeds}, {"fuzz_torch_checkpoint", torch_checkpoint_seeds},
        {"fuzz_torch_pickle", torch_pickle_seeds},
    };
    try {
        for (const auto& [name, make] : targets) {
            fs::remove_all(root / name);
            fs::create_directories(root / name);
            make(root / name);
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "make_fuzz_seeds: %s\n", e.what());
        return 1;
    }
    return 0;
}

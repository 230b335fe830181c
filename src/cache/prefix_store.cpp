#include "cache/prefix_store.h"

#include "common/error.h"
#include "model/model_fingerprint.h"
#include "cache/prefix_cache.h"
#include "cache/prompt_cache_file.h"

namespace dendro {

std::unique_ptr<PrefixStore> open_prefix_store(const PromptCacheOptions& options, const Model& model,
                                               WarningSink warn) {
    const bool file = !options.prompt_cache_file.empty();
    const bool dir = !options.cache_dir.empty();
    if (file && dir) fail("--prompt-cache and --cache-dir are alternatives: give one");
    if (!file && !dir) return nullptr;
    if (options.checkpoint_every < 0) fail("--cache-every must be >= 0, got ", options.checkpoint_every);
    if (options.max_bytes == 0) fail("--cache-size must be positive");
    if (file) {
        const ModelFingerprint fingerprint = fingerprint_model_file(model.gguf(), default_fingerprint_memo_dir());
        return std::make_unique<PromptCacheFile>(options.prompt_cache_file, fingerprint, model.hparams(),
                                                 std::move(warn));
    }
    CacheDirectory directory = CacheDirectory::open(options.cache_dir, /*create=*/true);
    const ModelFingerprint fingerprint =
        fingerprint_model_file(model.gguf(), directory.fingerprint_memo_dir().string());
    return std::make_unique<PrefixCache>(std::move(directory), fingerprint, model.hparams(), options.max_bytes,
                                         std::move(warn));
}

}  // namespace dendro

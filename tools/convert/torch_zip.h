// The zip container torch.save writes (pytorch_model.bin since torch 1.6): every record stored uncompressed,
// so each one is viewed in place in the memory-mapped file. libzip reads the archive's directories (through
// the mapping) and says where each record's bytes begin; a record that is compressed, encrypted, out of the
// file's bounds, a second one of the same name, or whose bytes do not match its CRC-32 is refused by name.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>

namespace dendro {

class MappedFile;

class TorchZipArchive {
public:
    // Takes the mapping of the file; throws dendro::Error naming the file (and record) at fault.
    static std::unique_ptr<TorchZipArchive> open(std::unique_ptr<MappedFile> file);
    ~TorchZipArchive();
    TorchZipArchive(const TorchZipArchive&) = delete;
    TorchZipArchive& operator=(const TorchZipArchive&) = delete;

    const std::string& path() const;
    // The bytes of the record of that name, or nullptr when there is none.
    const std::span<const uint8_t>* find(std::string_view name) const;
    const std::map<std::string, std::span<const uint8_t>, std::less<>>& records() const { return records_; }

private:
    TorchZipArchive() = default;
    std::unique_ptr<MappedFile> file_;
    std::map<std::string, std::span<const uint8_t>, std::less<>> records_;
};

}  // namespace dendro

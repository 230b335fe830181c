#include "torch_zip.h"

#include <zip.h>
#include <zlib.h>

#include <algorithm>
#include <optional>

#include "common/checked_int.h"
#include "common/error.h"
#include "format/mapped_file.h"

namespace dendro {
namespace {

// crc32() takes lengths as uInt: long records are summed in pieces of this size.
constexpr size_t kCrcChunkBytes = size_t{1} << 30;

// A read-only libzip source over the mapped bytes. It remembers where its last read began: once libzip has
// opened a stored record and read its first byte, that is where the record's data starts in the file.
struct MappedSource {
    std::span<const uint8_t> bytes;
    uint64_t position = 0;
    uint64_t last_read_begin = 0;
    zip_error_t error;
};

zip_int64_t mapped_source_callback(void* user, void* data, zip_uint64_t length, zip_source_cmd_t command) {
    auto& source = *static_cast<MappedSource*>(user);
    switch (command) {
        case ZIP_SOURCE_OPEN:
            source.position = 0;
            return 0;
        case ZIP_SOURCE_READ: {
            const uint64_t available = source.bytes.size() - source.position;
            const uint64_t n = length < available ? length : available;
            source.last_read_begin = source.position;
            std::copy_n(source.bytes.data() + source.position, n, static_cast<uint8_t*>(data));
            source.position += n;
            return static_cast<zip_int64_t>(n);
        }
        case ZIP_SOURCE_CLOSE:
        case ZIP_SOURCE_FREE:
            return 0;
        case ZIP_SOURCE_STAT: {
            zip_stat_t* st = ZIP_SOURCE_GET_ARGS(zip_stat_t, data, length, &source.error);
            if (!st) return -1;
            zip_stat_init(st);
            st->size = source.bytes.size();
            st->valid |= ZIP_STAT_SIZE;
            return sizeof(*st);
        }
        case ZIP_SOURCE_ERROR:
            return zip_error_to_data(&source.error, data, length);
        case ZIP_SOURCE_SEEK: {
            const zip_int64_t target =
                zip_source_seek_compute_offset(source.position, source.bytes.size(), data, length, &source.error);
            if (target < 0) return -1;
            source.position = static_cast<uint64_t>(target);
            return 0;
        }
        case ZIP_SOURCE_TELL:
            return static_cast<zip_int64_t>(source.position);
        case ZIP_SOURCE_SUPPORTS:
            return ZIP_SOURCE_SUPPORTS_SEEKABLE;
        default:
            zip_error_set(&source.error, ZIP_ER_OPNOTSUPP, 0);
            return -1;
    }
}

struct ZipCloser {
    void operator()(zip_t* archive) const { zip_discard(archive); }
};
struct ZipFileCloser {
    void operator()(zip_file_t* file) const { zip_fclose(file); }
};

uint32_t crc32_of(std::span<const uint8_t> bytes) {
    uLong crc = crc32(0L, Z_NULL, 0);
    for (size_t done = 0; done < bytes.size(); done += kCrcChunkBytes) {
        const size_t n = std::min(kCrcChunkBytes, bytes.size() - done);
        crc = crc32(crc, bytes.data() + done, static_cast<uInt>(n));
    }
    return static_cast<uint32_t>(crc);
}

// Where the stored record `index` begins in the file, found by reading its first byte through libzip.
uint64_t record_offset(zip_t* archive, zip_uint64_t index, const MappedSource& source, const std::string& where) {
    const std::unique_ptr<zip_file_t, ZipFileCloser> file(zip_fopen_index(archive, index, 0));
    if (!file) fail(where, ": cannot be opened (", zip_strerror(archive), ")");
    uint8_t first = 0;
    if (zip_fread(file.get(), &first, 1) != 1) fail(where, ": cannot be read (", zip_file_strerror(file.get()), ")");
    return source.last_read_begin;
}

}  // namespace

TorchZipArchive::~TorchZipArchive() = default;

const std::string& TorchZipArchive::path() const { return file_->path(); }

const std::span<const uint8_t>* TorchZipArchive::find(std::string_view name) const {
    const auto it = records_.find(name);
    return it == records_.end() ? nullptr : &it->second;
}

std::unique_ptr<TorchZipArchive> TorchZipArchive::open(std::unique_ptr<MappedFile> mapped) {
    std::unique_ptr<TorchZipArchive> result(new TorchZipArchive());
    result->file_ = std::move(mapped);
    const std::string& path = result->file_->path();
    const std::span<const uint8_t> bytes = result->file_->bytes();

    MappedSource source{bytes, 0, 0, {}};
    zip_error_init(&source.error);
    zip_error_t error;
    zip_error_init(&error);
    zip_source_t* zip_source = zip_source_function_create(mapped_source_callback, &source, &error);
    if (!zip_source) fail(path, ": cannot read as a zip archive (", zip_error_strerror(&error), ")");
    // Without ZIP_CHECKCONS: with it, libzip refuses an out-of-bounds or duplicate record without naming it;
    // the bounds and CRC-32 checks below catch the same files and say which record is at fault.
    const std::unique_ptr<zip_t, ZipCloser> archive(zip_open_from_source(zip_source, ZIP_RDONLY, &error));
    if (!archive) {
        zip_source_free(zip_source);
        const std::string reason = zip_error_strerror(&error);
        zip_error_fini(&error);
        fail(path, ": not a valid zip archive (", reason, "; truncated file?)");
    }
    zip_error_fini(&error);

    const zip_int64_t n_entries = zip_get_num_entries(archive.get(), 0);
    for (zip_int64_t i = 0; i < n_entries; ++i) {
        const auto index = static_cast<zip_uint64_t>(i);
        zip_stat_t st;
        if (zip_stat_index(archive.get(), index, ZIP_FL_ENC_RAW, &st) != 0 || !(st.valid & ZIP_STAT_NAME)) {
            fail(path, ": zip entry ", i, " cannot be read (", zip_strerror(archive.get()), ")");
        }
        const std::string name = st.name;
        const std::string where = concat(path, ": zip record '", name, "'");
        if (st.comp_method != ZIP_CM_STORE || st.comp_size != st.size) {
            fail(where, " is compressed (method ", st.comp_method, "); torch.save stores records uncompressed");
        }
        if (st.encryption_method != ZIP_EM_NONE) fail(where, " is encrypted");
        if (result->records_.count(name)) fail(where, " appears twice in the archive");
        std::span<const uint8_t> data;
        if (st.size > 0) {
            const uint64_t begin = record_offset(archive.get(), index, source, where);
            const std::optional<uint64_t> end = try_add<uint64_t>(begin, st.size);
            if (!end || *end > bytes.size()) {
                fail(where, ": its ", st.size, " bytes at offset ", begin, " run past the end of the ", bytes.size(),
                     "-byte file (truncated file?)");
            }
            data = bytes.subspan(begin, st.size);
            if (!(st.valid & ZIP_STAT_CRC) || crc32_of(data) != st.crc) fail(where, ": CRC-32 mismatch (corrupt file?)");
        }
        result->records_.emplace(name, data);
    }
    return result;
}

}  // namespace dendro

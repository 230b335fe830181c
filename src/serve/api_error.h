// An error answered to an HTTP client: its status and an OpenAI-style body
//     {"error": {"message": ..., "type": ..., "param": ..., "code": ...}}
// Thrown by request parsing and validation; the HTTP layer turns it into the response.
#pragma once

#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

namespace dendro::serve {

inline constexpr int kHttpBadRequest = 400;
inline constexpr int kHttpUnauthorized = 401;
inline constexpr int kHttpNotFound = 404;
inline constexpr int kHttpRequestTimeout = 408;
inline constexpr int kHttpPayloadTooLarge = 413;
inline constexpr int kHttpServiceUnavailable = 503;
inline constexpr int kHttpInternalError = 500;

class ApiError : public std::runtime_error {
public:
    ApiError(int status, std::string type, std::string message, std::string param = "", std::string code = "")
        : std::runtime_error(message), status_(status), type_(std::move(type)), param_(std::move(param)),
          code_(std::move(code)) {}

    int status() const { return status_; }
    // The response body.
    nlohmann::json body() const { return error_body(what(), type_, param_, code_); }

    static nlohmann::json error_body(const std::string& message, const std::string& type, const std::string& param,
                                     const std::string& code) {
        nlohmann::json error = {{"message", message}, {"type", type}};
        error["param"] = param.empty() ? nlohmann::json(nullptr) : nlohmann::json(param);
        error["code"] = code.empty() ? nlohmann::json(nullptr) : nlohmann::json(code);
        return {{"error", error}};
    }

private:
    int status_;
    std::string type_, param_, code_;
};

// A 400 "invalid_request_error" naming the offending parameter.
inline ApiError invalid_request(const std::string& param, const std::string& message,
                                const std::string& code = "invalid_value") {
    return ApiError(kHttpBadRequest, "invalid_request_error", message, param, code);
}

}  // namespace dendro::serve

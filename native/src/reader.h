// Reading JS values handed to the addon, with field paths for every message (shared by all readers).
#pragma once

#include <napi.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "program.h"

namespace dendra {

inline const char* typedArrayName(napi_typedarray_type type) {
  switch (type) {
    case napi_int8_array: return "Int8Array";
    case napi_uint8_array: return "Uint8Array";
    case napi_uint8_clamped_array: return "Uint8ClampedArray";
    case napi_int16_array: return "Int16Array";
    case napi_uint16_array: return "Uint16Array";
    case napi_int32_array: return "Int32Array";
    case napi_uint32_array: return "Uint32Array";
    case napi_float32_array: return "Float32Array";
    case napi_float64_array: return "Float64Array";
    case napi_bigint64_array: return "BigInt64Array";
    case napi_biguint64_array: return "BigUint64Array";
    default: return "TypedArray";
  }
}

/** Walks the program object, producing field paths for messages. */
class Reader {
 public:
  explicit Reader(Napi::Env env) : env_(env) {}

  Napi::Object object(Napi::Value v, const std::string& path) {
    if (!v.IsObject() || v.IsArray() || v.IsTypedArray() || v.IsFunction())
      throwTypeError(env_, path + " must be an object (got " + describe(v) + ")");
    return v.As<Napi::Object>();
  }

  Napi::Array array(Napi::Object o, const char* key, const std::string& path) {
    Napi::Value v = o.Get(key);
    if (!v.IsArray()) throwTypeError(env_, path + " must be an array (got " + describe(v) + ")");
    return v.As<Napi::Array>();
  }

  double number(Napi::Object o, const char* key, const std::string& path) {
    Napi::Value v = o.Get(key);
    if (!v.IsNumber()) throwTypeError(env_, path + " must be a number (got " + describe(v) + ")");
    double d = v.As<Napi::Number>().DoubleValue();
    if (!std::isfinite(d)) throwRangeError(env_, path + " = " + formatNumber(d) + " must be finite");
    return d;
  }

  bool boolean(Napi::Object o, const char* key, const std::string& path) {
    Napi::Value v = o.Get(key);
    if (!v.IsBoolean()) throwTypeError(env_, path + " must be a boolean (got " + describe(v) + ")");
    return v.As<Napi::Boolean>().Value();
  }

  int64_t integer(Napi::Object o, const char* key, const std::string& path, int64_t lo, int64_t hi) {
    double d = number(o, key, path);
    if (d != std::floor(d))
      throwRangeError(env_, path + " = " + formatNumber(d) + " must be an integer");
    if (d < static_cast<double>(lo) || d > static_cast<double>(hi))
      throwRangeError(env_, path + " = " + formatNumber(d) + " must be in [" + std::to_string(lo) + ", " +
                                std::to_string(hi) + "]");
    return static_cast<int64_t>(d);
  }

  template <typename T>
  Napi::TypedArrayOf<T> typed(Napi::Object o, const char* key, const std::string& path, napi_typedarray_type want) {
    Napi::Value v = o.Get(key);
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != want)
      throwTypeError(env_, path + " must be a" + (want == napi_int32_array ? "n " : " ") + typedArrayName(want) +
                               " (got " + describe(v) + ")");
    return v.As<Napi::TypedArrayOf<T>>();
  }

  std::vector<float> floats(Napi::Object o, const char* key, const std::string& path) {
    auto a = typed<float>(o, key, path, napi_float32_array);
    const float* p = a.Data();
    return std::vector<float>(p, p + a.ElementLength());
  }

  std::vector<int32_t> ints(Napi::Object o, const char* key, const std::string& path) {
    auto a = typed<int32_t>(o, key, path, napi_int32_array);
    const int32_t* p = a.Data();
    return std::vector<int32_t>(p, p + a.ElementLength());
  }

  void length(const std::string& path, size_t got, size_t want, const std::string& why) {
    if (got != want)
      throwRangeError(env_, path + " has length " + std::to_string(got) + ", expected " + std::to_string(want) +
                                " (" + why + ")");
  }

  void finite(const std::string& path, const std::vector<float>& v) {
    for (size_t i = 0; i < v.size(); ++i)
      if (!std::isfinite(v[i]))
        throwRangeError(env_, path + "[" + std::to_string(i) + "] = " + formatNumber(v[i]) + " must be finite");
  }

  /** Every index in [0, limit); `what` completes "is outside ...". */
  void indices(const std::string& path, const std::vector<int32_t>& v, int64_t limit, const std::string& what) {
    for (size_t i = 0; i < v.size(); ++i)
      if (v[i] < 0 || v[i] >= limit)
        throwRangeError(env_, path + "[" + std::to_string(i) + "] = " + std::to_string(v[i]) + " is outside " + what);
  }

  Napi::Env env() const { return env_; }

 private:
  Napi::Env env_;
};

}  // namespace dendra

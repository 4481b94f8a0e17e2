// tsnet_zstd: streaming zstd decompression for image layers (Node 20's zlib has
// none). A module of its own, loaded only when a zstd layer arrives, so nothing
// else links libzstd.
//
// decoder() returns an object whose push(chunk) returns the bytes that chunk
// decompressed to, and whose end() says whether the input ended on a frame
// boundary (false: the stream is truncated).
#include <napi.h>
#include <zstd.h>

#include <string>
#include <vector>

namespace {

class Decoder : public Napi::ObjectWrap<Decoder> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "ZstdDecoder", {InstanceMethod("push", &Decoder::Push), InstanceMethod("end", &Decoder::End)});
  }
  explicit Decoder(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Decoder>(info), ds_(ZSTD_createDStream()) {
    if (!ds_) Napi::Error::New(info.Env(), "zstd: out of memory").ThrowAsJavaScriptException();
    else ZSTD_initDStream(ds_);
  }
  ~Decoder() override {
    if (ds_) ZSTD_freeDStream(ds_);
  }

 private:
  Napi::Value Push(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!ds_ || !info[0].IsBuffer()) {
      Napi::TypeError::New(env, "push(buffer)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    auto in = info[0].As<Napi::Buffer<uint8_t>>();
    ZSTD_inBuffer input = {in.Data(), in.Length(), 0};
    std::vector<uint8_t> out;
    std::vector<uint8_t> buf(ZSTD_DStreamOutSize());
    while (input.pos < input.size || last_ > 0) {
      ZSTD_outBuffer output = {buf.data(), buf.size(), 0};
      size_t r = ZSTD_decompressStream(ds_, &output, &input);
      if (ZSTD_isError(r)) {
        Napi::Error::New(env, std::string("zstd: ") + ZSTD_getErrorName(r)).ThrowAsJavaScriptException();
        return env.Undefined();
      }
      last_ = r;
      out.insert(out.end(), buf.data(), buf.data() + output.pos);
      // All input used and the output buffer not full: nothing more to flush now.
      if (input.pos == input.size && output.pos < output.size) break;
    }
    return Napi::Buffer<uint8_t>::Copy(env, out.data(), out.size());
  }
  Napi::Value End(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), last_ == 0);
  }

  ZSTD_DStream* ds_;
  size_t last_ = 0;
};

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Decoder", Decoder::Define(env));
  return exports;
}

}  // namespace

NODE_API_MODULE(tsnet_zstd, Init)

/** dendra's public API: the compiler, the artifact, the runtime. */
export { compile, importModel, resolveProfile, type CompileOptions } from './compiler/index.js';
export { writeArtifact } from './artifact/write.js';
export { readArtifact, readArtifactFile } from './artifact/read.js';
export { InferenceSession, Tensor, type SessionOptions } from './runtime/index.js';
export { loadProfile, builtinProfiles, type DeviceProfile } from './common/profile.js';
export { DendraError, ModelError, ArtifactError, ProfileError, InputError, DeviceError } from './common/errors.js';

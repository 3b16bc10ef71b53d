/**
 * The .dendra artifact: one file holding a compiled network (docs/artifact-format.md).
 *
 *   offset 0   magic      8 bytes  0x89 'D' 'N' 'D' 'R' '\r' '\n' 0x1a
 *   offset 8   version    uint32 LE  (FORMAT_VERSION)
 *   offset 12  headerLen  uint32 LE
 *   offset 16  header     headerLen bytes of UTF-8 JSON (ArtifactHeader), then zero padding to 8 bytes
 *   ...        blobs      little-endian typed arrays (float32, int32, uint8), each starting on an 8-byte boundary
 *   end - 32   sha256     SHA-256 of every byte before it
 *
 * Typed arrays inside the model are stored as blobs and appear in the JSON as {"$blob": i}; the
 * header's `blobs[i]` gives {dtype, offset, length}, offset in bytes from the start of the blob section
 * (the first 8-byte boundary after the header).
 */
import type { PlacedModel } from '../compiler/ir/placed.js';

export const MAGIC = Uint8Array.from([0x89, 0x44, 0x4e, 0x44, 0x52, 0x0d, 0x0a, 0x1a]);
/** Version 2 adds dendrites (layer.dendrites, tile.branch, layer.somaFullScale, model.dendrites); version 1 files still read. */
export const FORMAT_VERSION = 2;
export const READABLE_VERSIONS: readonly number[] = [1, 2];
export const FORMAT_NAME = 'dendra-artifact';
export const PREAMBLE_BYTES = 16;
export const CHECKSUM_BYTES = 32;

export type BlobDType = 'float32' | 'int32' | 'uint8';

export interface BlobRef {
  dtype: BlobDType;
  /** Byte offset from the start of the blob section. */
  offset: number;
  /** Number of elements. */
  length: number;
}

export interface ArtifactHeader {
  format: typeof FORMAT_NAME;
  version: number;
  /** dendra version that wrote it. */
  writer: string;
  created: string;
  /** The model, with typed arrays replaced by {"$blob": i}. */
  model: unknown;
  blobs: BlobRef[];
}

/** What an artifact holds: the placed network, its device profile and where it came from. */
export type Artifact = PlacedModel;

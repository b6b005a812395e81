// Estimated cost of a volume: AWS S3 list prices per storage class.
//
// Source: https://aws.amazon.com/s3/pricing/ — US East (N. Virginia), public list
// prices (first 50 TB tier for storage), without free tier, discounts, taxes or
// data transfer. Written down on 2026-11-30 from the published list (these figures
// have stood since GLACIER_IR launched in Nov 2021); this build does not fetch them,
// so check the page, and override the storage price with --price-per-gb-month.
// A "GB" in AWS billing is 2^30 bytes.
import type { StorageClass } from './storage.js';

export interface ClassPrice {
  /** USD per GB-month stored. */
  readonly storagePerGbMonth: number;
  /** USD per 1000 PUT, COPY, POST and LIST requests. */
  readonly putPer1000: number;
  /** USD per 1000 GET, HEAD and other requests. DELETE is free. */
  readonly getPer1000: number;
  /** USD per GB read back (the IA and Glacier IR retrieval fee). */
  readonly retrievalPerGb: number;
  /** Objects smaller than this are billed as this size (IA classes: 128 KiB). */
  readonly minObjectBytes: number;
  /** INTELLIGENT_TIERING's monitoring fee, USD per 1000 objects a month (objects of 128 KiB and more). */
  readonly monitoringPer1000Objects: number;
}

export const PRICES_SOURCE = 'AWS S3 list prices, us-east-1, recorded 2026-11-30: https://aws.amazon.com/s3/pricing/';

const KIB128 = 128 * 1024;
export const PRICES: Readonly<Record<StorageClass, ClassPrice>> = {
  STANDARD: { storagePerGbMonth: 0.023, putPer1000: 0.005, getPer1000: 0.0004, retrievalPerGb: 0, minObjectBytes: 0, monitoringPer1000Objects: 0 },
  // Frequent Access tier: the price until objects go 30 days unread.
  INTELLIGENT_TIERING: { storagePerGbMonth: 0.023, putPer1000: 0.005, getPer1000: 0.0004, retrievalPerGb: 0, minObjectBytes: 0, monitoringPer1000Objects: 0.0025 },
  STANDARD_IA: { storagePerGbMonth: 0.0125, putPer1000: 0.01, getPer1000: 0.001, retrievalPerGb: 0.01, minObjectBytes: KIB128, monitoringPer1000Objects: 0 },
  ONEZONE_IA: { storagePerGbMonth: 0.01, putPer1000: 0.01, getPer1000: 0.001, retrievalPerGb: 0.01, minObjectBytes: KIB128, monitoringPer1000Objects: 0 },
  GLACIER_IR: { storagePerGbMonth: 0.004, putPer1000: 0.02, getPer1000: 0.01, retrievalPerGb: 0.03, minObjectBytes: KIB128, monitoringPer1000Objects: 0 },
};

const GB = 2 ** 30;

/** A month of storing `objects` block objects of `objectBytes` each. */
export function monthlyStorageCost(cls: StorageClass, objects: number, objectBytes: number, pricePerGbMonth?: number): number {
  const p = PRICES[cls];
  const billed = objects * Math.max(objectBytes, p.minObjectBytes);
  const monitored = objectBytes >= KIB128 ? objects : 0;
  return round((billed / GB) * (pricePerGbMonth ?? p.storagePerGbMonth) + (monitored / 1000) * p.monitoringPer1000Objects);
}

export interface RequestCounts {
  readonly get: number;
  readonly put: number;
  readonly delete: number;
  readonly list: number;
  readonly head: number;
  /** Bytes downloaded: what a retrieval fee is charged on. */
  readonly bytesIn?: number;
}

/** What a mount's requests (and, for IA classes, its retrievals) cost. */
export function requestCost(cls: StorageClass, n: RequestCounts): number {
  const p = PRICES[cls];
  return round(((n.put + n.list) / 1000) * p.putPer1000 + ((n.get + n.head) / 1000) * p.getPer1000 + ((n.bytesIn ?? 0) / GB) * p.retrievalPerGb);
}

/** To a millionth of a dollar: enough to show the price of a few requests, no float noise. */
function round(usd: number): number {
  return Math.round(usd * 1e6) / 1e6;
}

export function formatUsd(usd: number): string {
  if (usd === 0) return '$0';
  if (usd < 0.01) return `$${usd.toPrecision(2)}`;
  return `$${usd.toFixed(2)}`;
}

// A small builder for metric families, so the collectors declare each metric once (name, type, help) and add
// samples to it; the order of declaration is the order of the scrape.
import type { Labels, MetricFamily, MetricType } from './exposition.js';

export class Families {
  private readonly byName = new Map<string, MetricFamily>();

  /** Declares a family (once), returning a function that adds a sample to it. */
  declare(name: string, type: MetricType, help: string): (labels: Labels, value: number) => void {
    const family: MetricFamily = { name, type, help, samples: [] };
    this.byName.set(name, family);
    return (labels, value) => void family.samples.push({ labels, value });
  }

  list(): MetricFamily[] {
    return [...this.byName.values()];
  }
}

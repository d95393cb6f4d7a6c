/**
 * The part of d3-scale (4.x) that the report uses: linear and log scales, their "nice"
 * domains, ticks and tick formats. (d3-scale ships no types of its own.)
 */
declare module 'd3-scale' {
  export interface ContinuousScale {
    (value: number): number;
    domain(): number[];
    domain(domain: number[]): this;
    range(range: number[]): this;
    clamp(clamp: boolean): this;
    nice(count?: number): this;
    copy(): this;
    ticks(count?: number): number[];
    tickFormat(count?: number, specifier?: string): (value: number) => string;
  }
  export function scaleLinear(): ContinuousScale;
  export function scaleLog(): ContinuousScale;
}

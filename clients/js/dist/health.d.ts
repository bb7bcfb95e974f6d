export declare class HealthServer {
    #private;
    /** Answers about the whole server ("") and about `services`. */
    constructor(services: readonly string[]);
    /** Listen on "host:port" (port 0: any free one); resolves to the address bound. */
    listen(address: string): Promise<string>;
    /** Answer SERVING or NOT_SERVING from now on (watchers are told). */
    setServing(serving: boolean): void;
    /** Stop serving, ending open watches. */
    close(): void;
}

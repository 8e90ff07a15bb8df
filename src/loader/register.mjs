// `node --import tsx --import ./src/loader/register.mjs …`: adds hooks.mjs after tsx.
import { register } from 'node:module';

register('./hooks.mjs', import.meta.url);
